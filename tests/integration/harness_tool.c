/* The tool and what its services say: where the binary is, the model a
 * test is run for, the chargen stream, the echo and ack services. */
#include "harness_private.h"
#include "ioplex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef IOPLEX_BIN
#error "IOPLEX_BIN must name the ioplex binary"
#endif

const char *ioplex_bin(void)
{
    const char *e = getenv("IOPLEX_BIN");
    return e && *e ? e : IOPLEX_BIN;
}

const char *harness_model(int argc, char **argv)
{
    if (argc < 2 || !argv[1][0]) {
        fprintf(stderr, "usage: %s MODEL\n", argc > 0 ? argv[0] : "test");
        exit(2);
    }
    return argv[1];
}

int harness_is_event_model(const char *m)
{
    static const char *const ev[] = {"select", "poll", "epoll", "kqueue", "uring", NULL};
    for (int i = 0; ev[i]; i++)
        if (strcmp(m, ev[i]) == 0)
            return 1;
    return 0;
}

char chargen_at(size_t pos)
{
    size_t k = pos / 74, i = pos % 74;
    if (i == 72)
        return '\r';
    if (i == 73)
        return '\n';
    return (char)(' ' + (k + i) % 95);
}

int model_serves_datagrams(const char *model)
{
    for (const struct iop_model_info *const *m = iop_models(); *m; m++)
        if (strcmp((*m)->name, model) == 0)
            return (*m)->datagram ? 1 : 0;
    return -1;
}

int echo_line(int fd, const char *line, int timeout_ms)
{
    size_t len = strlen(line);
    char buf[128];
    if (len > sizeof buf || send_all(fd, line, len) != 0)
        return 0;
    return recv_exact(fd, buf, len, timeout_ms) == (ssize_t)len &&
           memcmp(buf, line, len) == 0;
}

/* What the ack service answers to every message. */
static const char ack_reply[] = "I got your message\n";

int recv_ack(int fd, int timeout_ms)
{
    char buf[256];
    ssize_t n = recv_all(fd, buf, sizeof buf, timeout_ms);
    return n == (ssize_t)strlen(ack_reply) && memcmp(buf, ack_reply, strlen(ack_reply)) == 0;
}

int ack_exchange(struct server *s, const char *line)
{
    int fd = client_connect(s);
    if (fd < 0)
        return 0;
    int ok = send_all(fd, line, strlen(line)) == 0 && recv_ack(fd, HARNESS_IO_TIMEOUT_MS);
    client_close(fd);
    return ok;
}
