/*
 * ioplex connect: a client for any server.
 *
 * On a terminal it is the course's client.c: prompt, send one line, print
 * the answer. Otherwise, and on a terminal with -D (--duplex), it is
 * netcat: stdin to the socket and the socket to stdout, both at once.
 * nc and ncat are always that, and have no flag to name; "duplex" says
 * what it gives, and -D because their -d means "no stdin" (nc) and
 * "delay" (ncat). Both directions run through one poll() loop
 * with a non-blocking socket, because a client that blocks writing while
 * the server blocks writing back (an echo of a large input) deadlocks.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "../src/net/proxy_header.h"
#include "tls_client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 65536
#define DATAGRAM_MAX 65507 /* the largest UDP payload over IPv4 */
#define DGRAM_WAIT_DEFAULT_MS 2000
#define PROMPT "Please enter the message: "

struct client {
    int fd;
    int stream;     /* stream socket (TCP, Unix) or datagram */
    int timeout_ms; /* -w: idle bound; -1 none */
    int tty;        /* stdin is a terminal (--duplex): the peer's close ends it */
    /* --tls: the session over fd (non-blocking then), what its last read
     * and last write wait for (POLLIN or POLLOUT), why it failed. */
    SSL *ssl;
    short rwant, wwant;
    int tls_failed;   /* the last -1 of cl_recv/cl_send was TLS's own failure */
    int truncated;    /* the server ended without close_notify */
    char why[TLS_WHY_LEN];
};

/* ---- the socket, or TLS over it -------------------------------------------- */

/* recv() and send() on the socket, or SSL_read and SSL_write over it:
 * -1 with EAGAIN when TLS must wait (for cl->rwant / cl->wwant); a TLS
 * failure is -1 with EPROTO and its reason in cl->why. The server's end
 * without close_notify reads as the end of the stream, noted (truncated). */
static ssize_t cl_recv(struct client *cl, void *buf, size_t len)
{
    if (!cl->ssl)
        return recv(cl->fd, buf, len, 0);
    int err;
    ssize_t r = tls_client_read(cl->ssl, buf, len, &cl->rwant, &err, cl->why);
    if (r > 0)
        cl->rwant = POLLIN;
    if (r >= 0)
        return r;
    if (r == TLS_TRUNCATED) {
        cl->truncated = 1;
        return 0;
    }
    cl->tls_failed = r == TLS_FAILED && !err;
    errno = r == TLS_WANT ? EAGAIN : err ? err : EPROTO;
    return -1;
}

static ssize_t cl_send(struct client *cl, const void *buf, size_t len)
{
    if (!cl->ssl)
        return send(cl->fd, buf, len, MSG_NOSIGNAL);
    int err;
    ssize_t r = tls_client_write(cl->ssl, buf, len, &cl->wwant, &err, cl->why);
    if (r > 0) {
        cl->wwant = POLLOUT;
        return r;
    }
    cl->tls_failed = r == TLS_FAILED && !err;
    errno = r == TLS_WANT ? EAGAIN : err ? err : EPROTO;
    return -1;
}

/* Decrypted bytes OpenSSL holds: the socket may have nothing more to say,
 * so poll() would not wake for them. */
static int cl_pending(const struct client *cl)
{
    return cl->ssl && SSL_pending(cl->ssl) > 0;
}

/* Write all of buf to a blocking descriptor (stdout). */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fail(int err, const char *what)
{
    cli_error("connect", "%s: %s", what, iop_strerror(err));
    return cli_exit_code(err);
}

/* --send-proxy: the header a balancer would send for this connection (its
 * own two ends, as getsockname() and getpeername() give them), before any
 * data, so that a server behind one can be tried without one. */
static int send_proxy_header(int fd, int version)
{
    char hdr[IOP__PROXY_V1_MAX];
    ssize_t n = iop__proxy_write_for(fd, version, hdr, sizeof hdr);
    for (ssize_t at = 0; n > 0 && at < n;) { /* the socket is blocking still */
        ssize_t w = send(fd, hdr + at, (size_t)(n - at), MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR)
            return -errno;
        at += w > 0 ? w : 0;
    }
    return n > 0 ? 0 : (int)n;
}

/* A failed cl_recv / cl_send (err: -errno): TLS's own reason when it has one. */
static int io_fail(struct client *cl, int err, const char *what)
{
    if (cl->ssl && cl->tls_failed) {
        cli_error("connect", "%s", cl->why);
        return EXIT_TLS;
    }
    return fail(err, what);
}

/* Wait for fd to be readable; 0 on timeout, 1 ready, negative errno. */
static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

/* ---- the course's exchange, on a terminal -------------------------------- */

/*
 * Prompt, then wait for one line on the terminal. A server that talks
 * first (daytime, a banner) is shown meanwhile, on a line of its own after
 * the prompt; one that closes before the line is typed ends the session:
 * there is nobody left to send it to. Returns 1 with the line (ending in
 * "\n") in *line and *len, or the exit code of a session already over.
 */
static int read_line(struct client *cl, char **line, size_t *len)
{
    fputs(PROMPT, stdout);
    fflush(stdout);
    int at_prompt = 1, shown = 0, rc = 1;
    size_t cap = 256, got = 0;
    char *buf = malloc(cap);
    char *early = malloc(CHUNK);
    if (!buf || !early) {
        rc = fail(-ENOMEM, "buffers");
        goto out;
    }
    for (;;) {
        struct pollfd p[2] = {
            {.fd = STDIN_FILENO, .events = POLLIN},
            {.fd = cl->fd, .events = POLLIN},
        };
        p[1].events = cl->ssl ? cl->rwant : POLLIN;
        if (poll(p, 2, cl_pending(cl) ? 0 : -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = fail(-errno, "poll");
            goto out;
        }
        if (p[1].revents || cl_pending(cl)) {
            ssize_t n = cl_recv(cl, early, CHUNK);
            if (n > 0 || (n == 0 && cl->stream)) {
                if (at_prompt)
                    fputc('\n', stdout);
                at_prompt = 0;
                fflush(stdout);
            }
            if (n > 0) {
                write_all(STDOUT_FILENO, early, (size_t)n);
                shown = 1;
            } else if (n == 0 && cl->stream) {
                /* Closed before the line: what it said was the session. */
                if (!shown) {
                    cli_error("connect", "the server closed the connection without answering");
                    rc = EXIT_ERROR;
                } else {
                    rc = EXIT_OK;
                }
                goto out;
            } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
                int e = -errno;
                if (at_prompt)
                    fputc('\n', stdout);
                fflush(stdout);
                rc = io_fail(cl, e, "recv"); /* a reset, or UDP's port unreachable */
                goto out;
            }
        }
        if (p[0].revents) {
            if (cap - got < 2) {
                char *grown = realloc(buf, cap * 2);
                if (!grown) {
                    rc = fail(-ENOMEM, "reading the message");
                    goto out;
                }
                buf = grown;
                cap *= 2;
            }
            /* A terminal gives a line per read; like the course's fgets(),
             * the first line is the message. */
            ssize_t n = read(STDIN_FILENO, buf + got, cap - 1 - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (got > 0)
                    break; /* EOF after part of a line: send that */
                fputc('\n', stdout);
                rc = EXIT_OK; /* EOF at the prompt: nothing to send */
                goto out;
            }
            char *nl = memchr(buf + got, '\n', (size_t)n);
            got += (size_t)n;
            if (nl) {
                got = (size_t)(nl - buf) + 1;
                break;
            }
        }
    }
    if (buf[got - 1] != '\n')
        buf[got++] = '\n'; /* room kept: got < cap */
    *line = buf;
    *len = got;
    buf = NULL;
out:
    fflush(stdout);
    free(buf);
    free(early);
    return rc;
}

static int interactive(struct client *cl)
{
    char *line = NULL;
    size_t len = 0;
    int rc = read_line(cl, &line, &len);
    if (rc != 1)
        return rc;
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = cl_send(cl, line + sent, len - sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) { /* TLS: the socket is non-blocking */
            struct pollfd p = {.fd = cl->fd, .events = cl->wwant};
            if (poll(&p, 1, cl->timeout_ms) == 0) {
                free(line);
                cli_error("connect", "could not send within %d ms (-w)", cl->timeout_ms);
                return EXIT_TIMEOUT;
            }
            continue;
        }
        if (n < 0) {
            int e = -errno;
            free(line);
            return io_fail(cl, e, "send");
        }
        sent += (size_t)n;
    }
    free(line);

    /* The answer ends at its newline, or when the server closes (the
     * lab's server answers without a newline and exits). */
    char reply[CHUNK];
    size_t got = 0;
    int wait_ms = cl->stream ? cl->timeout_ms
                             : (cl->timeout_ms >= 0 ? cl->timeout_ms : DGRAM_WAIT_DEFAULT_MS * 2);
    while (got < sizeof reply - 1) {
        int r = cl_pending(cl) ? 1 : wait_readable(cl->fd, wait_ms);
        if (r < 0)
            return fail(r, "poll");
        if (r == 0) {
            cli_error("connect", "no answer within %d ms", wait_ms);
            return EXIT_TIMEOUT;
        }
        ssize_t n = cl_recv(cl, reply + got, sizeof reply - 1 - got);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return io_fail(cl, -errno, "recv");
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (!cl->stream || memchr(reply, '\n', got))
            break;
    }
    if (got == 0) {
        cli_error("connect", "the server closed the connection without answering");
        return EXIT_ERROR;
    }
    if (reply[got - 1] != '\n')
        reply[got++] = '\n';
    fwrite(reply, 1, got, stdout);
    fflush(stdout);
    return EXIT_OK;
}

/* ---- netcat mode ---------------------------------------------------------- */

/* TLS's half-close: close_notify, as nc -N's shutdown. 1 sent (or it
 * failed), 0 to be retried once the socket is ready for cl->wwant. */
static int close_notify(struct client *cl)
{
    int err;
    char why[TLS_WHY_LEN];
    int r = tls_client_close_notify(cl->ssl, &cl->wwant, &err, why);
    if (r == TLS_WANT)
        return 0;
    cl->wwant = POLLOUT;
    return 1;
}

/*
 * The peer's FIN ends reading, not writing: stdin is still sent to its
 * end and then half-closed, as nc -N does (a peer may shut its side at
 * once and only listen: nc -l -N < /dev/null). The client exits when both
 * directions are done. Input that could not be sent (the peer reset the
 * connection) is an error: one line, a non-zero exit.
 */
static int pump_stream(struct client *cl)
{
    char *out = malloc(CHUNK); /* stdin bytes not yet sent */
    char *in = malloc(CHUNK);
    if (!out || !in) {
        free(out);
        free(in);
        return fail(-ENOMEM, "buffers");
    }
    size_t out_off = 0, out_len = 0;
    int stdin_open = 1, write_shut = 0, read_open = 1, rc = EXIT_OK;
    int lost = 0; /* the error that stopped stdin being sent, negative */
    int lost_tls = 0; /* ... a TLS failure, said in cl->why */
    fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK);
    for (;;) {
        /* At stdin EOF, once everything is sent, half-close: the server
         * sees end-of-stream and can finish answering. */
        if (!stdin_open && out_len == 0 && !write_shut) {
            /* Its failure, as shutdown()'s, loses nothing: all of stdin
             * is sent (a server that has closed already resets it). */
            int r = cl->ssl ? close_notify(cl) : 1;
            if (r != 0) {
                shutdown(cl->fd, SHUT_WR);
                write_shut = 1;
            }
        }
        if (write_shut && !read_open)
            break;
        /* A terminal has no end of input to wait for: once the peer has
         * closed and what was typed is sent, the session is over (as
         * ncat and telnet end it). */
        if (cl->tty && !read_open && out_len == 0)
            break;
        /* After the peer's FIN the socket is polled for errors only (a
         * reset while stdin is still being sent). Under TLS a read or a
         * write may wait for the other direction, and what OpenSSL holds
         * decrypted already is read without waiting. */
        short rwant = cl->ssl ? cl->rwant : POLLIN, wwant = cl->ssl ? cl->wwant : POLLOUT;
        int sending = out_len || (!stdin_open && !write_shut);
        int pending = read_open && cl_pending(cl);
        struct pollfd p[2] = {
            {.fd = stdin_open && out_len == 0 ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = cl->fd,
             .events = (short)((read_open ? rwant : 0) | (sending ? wwant : 0))},
        };
        int n = poll(p, 2, pending ? 0 : cl->timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail(-errno, "poll");
            break;
        }
        if (n == 0 && !pending) {
            cli_error("connect", "idle for %d ms (-w), giving up", cl->timeout_ms);
            rc = EXIT_TIMEOUT;
            break;
        }
        if (p[0].revents) {
            ssize_t r = read(STDIN_FILENO, out, CHUNK);
            if (r > 0) {
                out_off = 0;
                out_len = (size_t)r;
            } else if (r == 0 || errno != EINTR) {
                stdin_open = 0;
            }
        }
        if (out_len && (p[1].revents & (wwant | POLLERR | POLLHUP))) {
            ssize_t r = cl_send(cl, out + out_off, out_len);
            if (r > 0) {
                out_off += (size_t)r;
                out_len -= (size_t)r;
            } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                /* The connection failed (reset, ETIMEDOUT, EHOSTUNREACH):
                 * input is lost. What the peer sent before may still
                 * matter, so it is read to the end before the error. */
                lost = -errno;
                lost_tls = cl->tls_failed;
                out_len = 0;
                stdin_open = 0;
                write_shut = 1;
            }
        } else if (!read_open && (p[1].revents & (POLLERR | POLLHUP))) {
            /* Reset while nothing was being sent, after the peer's FIN. */
            int err = 0;
            socklen_t elen = sizeof err;
            getsockopt(cl->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
            lost = err ? -err : -EPIPE;
            break;
        }
        if (read_open && (pending || (p[1].revents & (rwant | POLLHUP | POLLERR)))) {
            ssize_t r = cl_recv(cl, in, CHUNK);
            if (r == 0) {
                read_open = 0; /* the peer's FIN: keep sending stdin */
                if (lost)
                    break;
            } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                if (!lost && (stdin_open || out_len)) {
                    lost = -errno; /* said once, below */
                    lost_tls = cl->tls_failed;
                } else if (!lost)
                    rc = io_fail(cl, -errno, "recv");
                break;
            } else if (r > 0 && write_all(STDOUT_FILENO, in, (size_t)r) != 0) {
                break; /* stdout is gone: nothing left to deliver to */
            }
        }
    }
    if (lost && lost_tls) {
        cli_error("connect", "%s before the end of stdin was sent", cl->why);
        rc = EXIT_TLS;
    } else if (lost) {
        cli_error("connect", "%s before the end of stdin was sent", iop_strerror(lost));
        rc = cli_exit_code(lost);
    } else if (cl->truncated && rc == EXIT_OK) {
        /* Said, not failed: ncat and many servers end so, and a netcat
         * cannot refuse them; but the end may be someone else's. */
        cli_error("connect", "note: the server closed the connection without TLS "
                             "close_notify: what it sent may be cut short");
    }
    free(out);
    free(in);
    return rc;
}

/* Datagrams have no end-of-stream: after stdin ends, wait for as many
 * answers as datagrams were sent, or for -w of silence. */
static int pump_datagrams(struct client *cl)
{
    char *buf = malloc(CHUNK);
    if (!buf)
        return fail(-ENOMEM, "buffers");
    long sent = 0, answered = 0;
    int stdin_open = 1, rc = EXIT_OK;
    int quiet_ms = cl->timeout_ms >= 0 ? cl->timeout_ms : DGRAM_WAIT_DEFAULT_MS;
    while (stdin_open || answered < sent) {
        struct pollfd p[2] = {
            {.fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = cl->fd, .events = POLLIN},
        };
        int n = poll(p, 2, stdin_open ? cl->timeout_ms : quiet_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail(-errno, "poll");
            break;
        }
        if (n == 0) {
            if (stdin_open) {
                cli_error("connect", "idle for %d ms (-w), giving up", cl->timeout_ms);
                rc = EXIT_TIMEOUT;
            }
            break; /* unanswered datagrams after stdin ended: done */
        }
        if (p[0].revents) {
            ssize_t r = read(STDIN_FILENO, buf, DATAGRAM_MAX);
            if (r <= 0) {
                if (r == 0 || errno != EINTR)
                    stdin_open = 0;
            } else if (send(cl->fd, buf, (size_t)r, MSG_NOSIGNAL) < 0) {
                rc = fail(-errno, "send");
                break;
            } else {
                sent++;
            }
        }
        if (p[1].revents) {
            ssize_t r = recv(cl->fd, buf, CHUNK, 0);
            if (r < 0 && errno != EINTR) {
                /* ECONNREFUSED: an ICMP "port unreachable" came back. */
                rc = fail(-errno, "recv");
                break;
            }
            if (r >= 0) {
                answered++;
                if (write_all(STDOUT_FILENO, buf, (size_t)r) != 0)
                    break;
            }
        }
    }
    free(buf);
    return rc;
}

/* ---- options ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex connect [options] HOST PORT\n"
            "       ioplex connect [options] ADDRESS   (tcp://H:P, udp://H:P, unix:///PATH, unixgram:///PATH)\n"
            "       ioplex connect [options] -U PATH\n"
            "\n"
            "Two modes:\n"
            "  course  the default when stdin is a terminal: the course's client.c.\n"
            "          It prompts \"Please enter the message: \", sends one line,\n"
            "          prints the answer and exits. What the server sends before\n"
            "          the line is shown at once, and a server that closes first\n"
            "          (daytime) ends the session without waiting for a line.\n"
            "  duplex  -D on a terminal, and always when stdin is not one: like\n"
            "          netcat, stdin to the socket and the socket to stdout, both\n"
            "          at once. At the end of stdin (^D on a terminal) the socket\n"
            "          is half-closed. The server's close ends reading, not\n"
            "          sending: from a pipe or file, stdin is still sent to its\n"
            "          end (exit 1 if the server resets the connection first);\n"
            "          on a terminal the session ends when the server closes.\n"
            "          Over UDP each read of stdin is one datagram; after the end\n"
            "          of stdin the client waits for one answer per datagram, or\n"
            "          -w seconds of silence (default 2).\n"
            "\n"
            "Options:\n"
            "  -D, --duplex       the duplex mode on a terminal too (as nc and ncat)\n"
            "  -u, --udp          UDP (with -U: a Unix datagram socket)\n"
            "  -U, --unix PATH    a Unix-domain socket at PATH\n"
            "  -4, -6             IPv4 only, IPv6 only\n"
            "  -w, --wait SECS    give up connecting, or when idle, after SECS\n"
            "      --send-proxy[=v1|v2]\n"
            "                     start with a PROXY protocol header naming this\n"
            "                     connection's own ends: v1 (the default, a text line,\n"
            "                     as HAProxy's send-proxy) or v2 (its send-proxy-v2)\n"
            "  -h, --help         this text\n"
            "\n"
            "TLS (over TCP or a Unix socket):\n"
            "      --tls          speak TLS 1.2/1.3; the server's certificate is\n"
            "                     verified against the system's CA store and must name\n"
            "                     HOST (or --sni NAME); a failure is one line with its\n"
            "                     reason (exit 7). At the end of stdin close_notify is\n"
            "                     sent; a server that ends without its own (ncat) is\n"
            "                     noted on stderr: its last bytes may have been cut.\n"
            "      --tls-ca FILE  verify against the CAs in FILE instead (PEM)\n"
            "      --insecure     do not verify the server's certificate at all\n"
            "      --sni NAME     the server name sent and checked instead of HOST\n"
            "                     (over -U: the only name checked)\n"
            "      --tls-cert FILE  a client certificate, for mutual TLS (PEM)\n"
            "      --tls-key FILE   its private key (default: in --tls-cert)\n"
            "\n" EXIT_CODES_HELP);
}

enum { OPT_TLS = 256, OPT_TLS_CA, OPT_INSECURE, OPT_SNI, OPT_TLS_CERT, OPT_TLS_KEY };

static const struct option options[] = {
    {"tls", no_argument, NULL, OPT_TLS},
    {"tls-ca", required_argument, NULL, OPT_TLS_CA},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"sni", required_argument, NULL, OPT_SNI},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"udp", no_argument, NULL, 'u'},
    {"unix", required_argument, NULL, 'U'},
    {"wait", required_argument, NULL, 'w'},
    {"duplex", no_argument, NULL, 'D'},
    {"send-proxy", optional_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The TLS options fit together and with the transport. 0, or -1 said. */
static int tls_check(int tls, int insecure, const char *ca, const char *sni,
                     const char *cert, const char *key, const struct iop_addr *a)
{
    if (!tls && (insecure || ca || sni || cert || key)) {
        cli_error("connect", "--tls-ca, --insecure, --sni, --tls-cert and --tls-key need --tls");
        return -1;
    }
    if (tls && !iop_transport_is_stream(a->transport)) {
        cli_error("connect", "--tls needs a stream socket (TCP or Unix), not datagrams");
        return -1;
    }
    if (insecure && ca) {
        cli_error("connect", "--insecure verifies nothing: it cannot go with --tls-ca");
        return -1;
    }
    if (key && !cert) {
        cli_error("connect", "--tls-key needs --tls-cert");
        return -1;
    }
    return 0;
}

/* The handshake, bounded by -w; the socket stays non-blocking for the
 * session. EXIT_OK, or the exit code after one line. */
static int tls_start(struct client *cl, SSL_CTX *ctx, const char *name)
{
    fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK);
    if (!(cl->ssl = tls_client_ssl(ctx, cl->fd, name, cl->why))) {
        cli_error("connect", "%s", cl->why);
        return EXIT_ERROR;
    }
    cl->rwant = POLLIN;
    cl->wwant = POLLOUT;
    int r = tls_client_handshake_wait(cl->ssl, cl->fd, cl->timeout_ms, cl->why);
    if (r == 1)
        return EXIT_OK;
    cli_error("connect", "%s%s", cl->why, r == 0 ? " (-w)" : "");
    return r == 0 ? EXIT_TIMEOUT : EXIT_TLS;
}

int cmd_connect(int argc, char **argv)
{
    enum iop_transport transport = IOP_TCP;
    int family = AF_UNSPEC, timeout_ms = -1, duplex = 0, send_proxy = 0, c;
    const char *unix_path = NULL;
    int tls = 0, insecure = 0;
    const char *tls_ca = NULL, *sni = NULL, *tls_cert = NULL, *tls_key = NULL;
    optind = 1;
    opterr = 0; /* errors are reported in one line by cli_option_error */
    while ((c = getopt_long(argc, argv, ":uU:46w:Dh", options, NULL)) != -1) {
        switch (c) {
        case 'u': transport = IOP_UDP; break;
        case 'U': unix_path = optarg; break;
        case '4': family = AF_INET; break;
        case '6': family = AF_INET6; break;
        case 'D': duplex = 1; break;
        case 'P':
            /* v1 when no version is named, as HAProxy's `send-proxy` and
             * curl's --haproxy-protocol: a line a person can read. */
            if (!optarg || strcmp(optarg, "v1") == 0) {
                send_proxy = 1;
            } else if (strcmp(optarg, "v2") == 0) {
                send_proxy = 2;
            } else {
                cli_error("connect", "--send-proxy wants v1 or v2, not '%s'", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'w': {
            long long secs = cli_parse_number(optarg, 1, 86400);
            if (secs < 0) {
                cli_error("connect", "-w wants seconds from 1 to 86400, not '%s'", optarg);
                return EXIT_USAGE;
            }
            timeout_ms = (int)secs * 1000;
            break;
        }
        case OPT_TLS: tls = 1; break;
        case OPT_TLS_CA: tls_ca = optarg; break;
        case OPT_INSECURE: insecure = 1; break;
        case OPT_SNI: sni = optarg; break;
        case OPT_TLS_CERT: tls_cert = optarg; break;
        case OPT_TLS_KEY: tls_key = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            cli_option_error("connect", c, argv);
            return EXIT_USAGE;
        }
    }
    struct iop_addr addr;
    if (cli_parse_address("connect", &addr, transport, family, unix_path,
                          argc - optind, argv + optind, 0) != 0)
        return EXIT_USAGE;
    if (send_proxy && !iop_transport_is_stream(addr.transport)) {
        cli_error("connect", "--send-proxy needs a stream transport");
        return EXIT_USAGE;
    }
    SSL_CTX *ctx = NULL;
    if (tls_check(tls, insecure, tls_ca, sni, tls_cert, tls_key, &addr) != 0)
        return EXIT_USAGE;
    if (tls) {
        struct tls_client_cfg tc = {.verify = !insecure, .ca_file = tls_ca,
                                    .cert_file = tls_cert, .key_file = tls_key};
        char why[TLS_WHY_LEN];
        if (!(ctx = tls_client_ctx(&tc, why))) {
            cli_error("connect", "%s", why);
            return EXIT_USAGE; /* a file named on the command line is wrong */
        }
    }
    char err[IOP_ERR_LEN];
    struct client cl = {.timeout_ms = timeout_ms};
    int r = iop_connect(&addr, timeout_ms, &cl.fd, err);
    if (r != 0) {
        SSL_CTX_free(ctx);
        cli_error("connect", "%s", err);
        return cli_exit_code(r);
    }
    if (send_proxy && (r = send_proxy_header(cl.fd, send_proxy)) != 0) {
        SSL_CTX_free(ctx);
        close(cl.fd);
        return fail(r, "sending the PROXY header");
    }
    if (ctx) {
        r = tls_start(&cl, ctx, sni ? sni : iop_transport_is_unix(addr.transport) ? NULL
                                                                                : addr.host);
        SSL_CTX_free(ctx); /* the SSL holds its own reference */
        if (r != EXIT_OK) {
            SSL_free(cl.ssl);
            close(cl.fd);
            return r;
        }
    }
    cl.stream = iop_transport_is_stream(addr.transport);
    cl.tty = isatty(STDIN_FILENO);
    if (cl.tty && !duplex)
        r = interactive(&cl);
    else
        r = cl.stream ? pump_stream(&cl) : pump_datagrams(&cl);
    if (cl.ssl) {
        /* The course's exchange ends here: its close_notify (once), best
         * effort; the duplex one has sent it already. */
        short want;
        int e;
        char why[TLS_WHY_LEN];
        if (!(SSL_get_shutdown(cl.ssl) & SSL_SENT_SHUTDOWN))
            tls_client_close_notify(cl.ssl, &want, &e, why);
        SSL_free(cl.ssl);
    }
    close(cl.fd);
    return r;
}
