/* I/O on client sockets: writes in random fragments, bounded reads
 * (exactly n bytes, to end of file, a line, a datagram), and a full-duplex
 * exchange. Every wait is bounded. */
#include "harness_private.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A random piece size for a write of `left` bytes out of `total`. */
static size_t piece_size(size_t total, size_t left, unsigned *seed)
{
    size_t max = total / 4;
    if (max < 1)
        max = 1;
    if (max > 4096)
        max = 4096;
    size_t n = 1 + rng_next(seed) % max;
    if (rng_next(seed) & 1)
        n = 1 + rng_next(seed) % n; /* smaller pieces likelier */
    return n < left ? n : left;
}

/* Wait for fd to be ready for `events` until deadline: 1 ready, 0 timeout,
 * -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r = harness__poll_until(&p, 1, deadline);
    if (r < 0)
        return -1;
    if (r == 0) {
        errno = ETIMEDOUT;
        return 0;
    }
    return 1;
}

/* Write n bytes, waiting (bounded) when the socket is full. */
static int write_piece(int fd, const char *p, size_t n, long long deadline)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, deadline) <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

int send_fragmented(int fd, const void *buf, size_t len, unsigned *seed)
{
    const char *p = buf;
    size_t left = len;
    while (left > 0) {
        size_t n = piece_size(len, left, seed);
        if (write_piece(fd, p, n, now_ms() + HARNESS_IO_TIMEOUT_MS) != 0)
            return -1;
        p += n;
        left -= n;
        if (left > 0 && rng_next(seed) % 16 == 0)
            sleep_ms(1);
    }
    return 0;
}

int send_all(int fd, const void *buf, size_t len)
{
    return write_piece(fd, buf, len, now_ms() + HARNESS_IO_TIMEOUT_MS);
}

/* read() on a descriptor that may be non-blocking: waits (bounded) first.
 * Returns bytes, 0 at EOF, -1 on error or timeout. */
static ssize_t read_some(int fd, void *buf, size_t cap, long long deadline)
{
    for (;;) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r <= 0)
            return -1;
        ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = read(fd, buf, cap);
        if (n >= 0)
            return n;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
    }
}

ssize_t recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read_some(fd, (char *)buf + got, len - got, deadline);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t recv_all(int fd, char *buf, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    for (;;) {
        char extra;
        char *dst = got < cap ? buf + got : &extra;
        size_t room = got < cap ? cap - got : 1;
        ssize_t n = read_some(fd, dst, room, deadline);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (got >= cap) {
            errno = EMSGSIZE;
            return -1;
        }
        got += (size_t)n;
    }
    if (got < cap)
        buf[got] = '\0';
    return (ssize_t)got;
}

ssize_t recv_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read_some(fd, buf + got, 1, deadline);
        if (n < 0)
            return -1;
        if (n == 0) {
            buf[got] = '\0';
            return got == 0 ? 0 : -1;
        }
        if (buf[got++] == '\n') {
            buf[got] = '\0';
            return (ssize_t)got;
        }
    }
    if (cap)
        buf[got] = '\0';
    errno = EMSGSIZE;
    return -1;
}

ssize_t line_reader_next(struct line_reader *r, int fd, char *out, size_t cap,
                         int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        char *p = r->buf + r->off;
        char *nl = memchr(p, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - p);
            if (n >= cap)
                return -3;
            memcpy(out, p, n);
            out[n] = '\0';
            r->off += n + 1;
            return (ssize_t)n;
        }
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
        if (r->len == sizeof r->buf)
            return -3;
        ssize_t n = recv(fd, r->buf + r->len, sizeof r->buf - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return -2;
        if (now_ms() >= end)
            return -1;
        struct pollfd q = {.fd = fd, .events = POLLIN};
        harness__poll_until(&q, 1, end);
    }
}

ssize_t recv_dgram(int fd, void *buf, size_t cap, int timeout_ms)
{
    return read_some(fd, buf, cap, now_ms() + timeout_ms);
}

int wait_readable(int fd, int timeout_ms)
{
    int r = wait_fd(fd, POLLIN, now_ms() + timeout_ms);
    return r < 0 ? -1 : r;
}

int expect_eof(int fd, int timeout_ms)
{
    char c;
    ssize_t n = read_some(fd, &c, 1, now_ms() + timeout_ms);
    if (n < 0)
        return -1;
    return n == 0 ? 1 : 0;
}

ssize_t stream_exchange(int fd, const void *out, size_t outlen, char *in,
                        size_t incap, unsigned *seed, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int was = harness__set_nonblock(fd, 1);
    const char *p = out;
    size_t sent = 0, got = 0;
    int shut = 0, ret = -1;
    for (;;) {
        if (sent == outlen && !shut) {
            if (shutdown(fd, SHUT_WR) != 0)
                goto out;
            shut = 1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLIN | (shut ? 0 : POLLOUT)};
        int r = harness__poll_until(&pf, 1, deadline);
        if (r <= 0) {
            if (r == 0) {
                fprintf(stderr, "harness: stream_exchange timed out: sent %zu of %zu, "
                        "received %zu\n", sent, outlen, got);
                errno = ETIMEDOUT;
            }
            goto out;
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            char extra[4096];
            char *dst = got < incap ? in + got : extra;
            size_t room = got < incap ? incap - got : sizeof extra;
            ssize_t n = recv(fd, dst, room, 0);
            if (n == 0) {
                ret = (ssize_t)got;
                goto out;
            }
            if (n > 0) {
                if (got >= incap) {
                    errno = EMSGSIZE;
                    goto out;
                }
                got += (size_t)n;
            } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
                goto out;
            }
        }
        if (!shut && (pf.revents & POLLOUT)) {
            size_t n = piece_size(outlen, outlen - sent, seed);
            ssize_t w = send(fd, p + sent, n, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                goto out;
            if (rng_next(seed) % 32 == 0)
                sleep_ms(1);
        }
    }
out:
    if (was == 0)
        harness__set_nonblock(fd, 0);
    if (ret >= 0 && (size_t)ret < incap)
        in[ret] = '\0';
    return ret;
}
