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
};

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
    struct sockaddr_storage me, peer;
    socklen_t ml = sizeof me, pl = sizeof peer;
    if (getsockname(fd, (struct sockaddr *)&me, &ml) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
        return -errno;
    char hdr[IOP__PROXY_V1_MAX];
    ssize_t n = iop__proxy_write(version, (struct sockaddr *)&me, (struct sockaddr *)&peer,
                                 hdr, sizeof hdr);
    for (ssize_t at = 0; n > 0 && at < n;) { /* the socket is blocking still */
        ssize_t w = send(fd, hdr + at, (size_t)(n - at), MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR)
            return -errno;
        at += w > 0 ? w : 0;
    }
    return n > 0 ? 0 : -EINVAL;
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
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            rc = fail(-errno, "poll");
            goto out;
        }
        if (p[1].revents) {
            ssize_t n = recv(cl->fd, early, CHUNK, 0);
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
                rc = fail(e, "recv"); /* a reset, or UDP's port unreachable */
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
        ssize_t n = send(cl->fd, line + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = -errno;
            free(line);
            return fail(e, "send");
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
        int r = wait_readable(cl->fd, wait_ms);
        if (r < 0)
            return fail(r, "poll");
        if (r == 0) {
            cli_error("connect", "no answer within %d ms", wait_ms);
            return EXIT_TIMEOUT;
        }
        ssize_t n = recv(cl->fd, reply + got, sizeof reply - 1 - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(-errno, "recv");
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
    fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK);
    for (;;) {
        /* At stdin EOF, once everything is sent, half-close: the server
         * sees end-of-stream and can finish answering. */
        if (!stdin_open && out_len == 0 && !write_shut) {
            shutdown(cl->fd, SHUT_WR);
            write_shut = 1;
        }
        if (write_shut && !read_open)
            break;
        /* A terminal has no end of input to wait for: once the peer has
         * closed and what was typed is sent, the session is over (as
         * ncat and telnet end it). */
        if (cl->tty && !read_open && out_len == 0)
            break;
        /* After the peer's FIN the socket is polled for errors only (a
         * reset while stdin is still being sent). */
        struct pollfd p[2] = {
            {.fd = stdin_open && out_len == 0 ? STDIN_FILENO : -1, .events = POLLIN},
            {.fd = cl->fd,
             .events = (short)((read_open ? POLLIN : 0) | (out_len ? POLLOUT : 0))},
        };
        int n = poll(p, 2, cl->timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail(-errno, "poll");
            break;
        }
        if (n == 0) {
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
        if (out_len && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t r = send(cl->fd, out + out_off, out_len, MSG_NOSIGNAL);
            if (r > 0) {
                out_off += (size_t)r;
                out_len -= (size_t)r;
            } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                /* The connection failed (reset, ETIMEDOUT, EHOSTUNREACH):
                 * input is lost. What the peer sent before may still
                 * matter, so it is read to the end before the error. */
                lost = -errno;
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
        if (read_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = recv(cl->fd, in, CHUNK, 0);
            if (r == 0) {
                read_open = 0; /* the peer's FIN: keep sending stdin */
                if (lost)
                    break;
            } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                if (!lost && (stdin_open || out_len))
                    lost = -errno; /* said once, below */
                else if (!lost)
                    rc = fail(-errno, "recv");
                break;
            } else if (r > 0 && write_all(STDOUT_FILENO, in, (size_t)r) != 0) {
                break; /* stdout is gone: nothing left to deliver to */
            }
        }
    }
    if (lost) {
        cli_error("connect", "%s before the end of stdin was sent", iop_strerror(lost));
        rc = cli_exit_code(lost);
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
            "  -h, --help         this text\n\n" EXIT_CODES_HELP);
}

static const struct option options[] = {
    {"udp", no_argument, NULL, 'u'},
    {"unix", required_argument, NULL, 'U'},
    {"wait", required_argument, NULL, 'w'},
    {"duplex", no_argument, NULL, 'D'},
    {"send-proxy", optional_argument, NULL, 'P'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cmd_connect(int argc, char **argv)
{
    enum iop_transport transport = IOP_TCP;
    int family = AF_UNSPEC, timeout_ms = -1, duplex = 0, send_proxy = 0, c;
    const char *unix_path = NULL;
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
    char err[IOP_ERR_LEN];
    struct client cl = {.timeout_ms = timeout_ms};
    int r = iop_connect(&addr, timeout_ms, &cl.fd, err);
    if (r != 0) {
        cli_error("connect", "%s", err);
        return cli_exit_code(r);
    }
    if (send_proxy && (r = send_proxy_header(cl.fd, send_proxy)) != 0) {
        close(cl.fd);
        return fail(r, "sending the PROXY header");
    }
    cl.stream = iop_transport_is_stream(addr.transport);
    cl.tty = isatty(STDIN_FILENO);
    if (cl.tty && !duplex)
        r = interactive(&cl);
    else
        r = cl.stream ? pump_stream(&cl) : pump_datagrams(&cl);
    close(cl.fd);
    return r;
}
