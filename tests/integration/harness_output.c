/* A server's output: its stdout and stderr, read from the pipes into
 * struct server (pumped, never waited for unless asked), searched and
 * counted, and dumped for a failing test's log. */
#define _GNU_SOURCE
#include "harness_private.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Append to a NUL-terminated buffer of cap bytes; when it would overflow,
 * drop the oldest half (or more), counting the dropped bytes. */
static void append(char *buf, size_t cap, size_t *len, size_t *dropped,
                   const char *data, size_t n)
{
    size_t room = cap - 1;
    if (n > room) {
        *dropped += *len + n - room;
        data += n - room;
        n = room;
        *len = 0;
    }
    if (*len + n > room) {
        size_t drop = *len / 2;
        if (*len - drop + n > room)
            drop = *len + n - room;
        memmove(buf, buf + drop, *len - drop);
        *len -= drop;
        *dropped += drop;
    }
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

/* Non-overlapping occurrences of needle in buf[0 .. len). */
static int count_in(const char *buf, size_t len, const char *needle)
{
    size_t nlen = strlen(needle);
    if (nlen == 0)
        return 0;
    int count = 0;
    const char *p = buf, *end = buf + len;
    while ((p = memmem(p, (size_t)(end - p), needle, nlen)) != NULL) {
        count++;
        p += nlen;
    }
    return count;
}

/* The watched needle in the bytes just read, with the end of what came
 * before them (a needle may span two reads). */
static void count_watched(struct server *s, const char *data, size_t n)
{
    size_t nlen = strlen(s->watch);
    if (nlen == 0)
        return;
    size_t keep = s->err_len < nlen - 1 ? s->err_len : nlen - 1;
    char joined[16384 + sizeof s->watch];
    memcpy(joined, s->err + s->err_len - keep, keep);
    memcpy(joined + keep, data, n);
    s->watched += count_in(joined, keep + n, s->watch);
}

void server_watch_stderr(struct server *s, const char *needle)
{
    server_pump(s);
    snprintf(s->watch, sizeof s->watch, "%s", needle);
    s->watched = count_in(s->err, s->err_len, s->watch);
}

int server_watched(struct server *s)
{
    server_pump(s);
    return s->watched;
}

/* Read what is there from one of the server's pipes; closes it at EOF. */
static void pump_fd(struct server *s, int *fd, int is_out)
{
    char buf[16384];
    size_t err_dropped = 0;
    while (*fd >= 0) {
        ssize_t n = read(*fd, buf, sizeof buf);
        if (n > 0) {
            if (is_out)
                append(s->out, sizeof s->out, &s->out_len, &s->out_dropped, buf, (size_t)n);
            else {
                count_watched(s, buf, (size_t)n);
                append(s->err, sizeof s->err, &s->err_len, &err_dropped, buf, (size_t)n);
            }
            continue;
        }
        if (n < 0 && (errno == EINTR))
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close(*fd); /* EOF or a real error */
        *fd = -1;
        harness__reg_server_closed_fd(s->pid, is_out);
    }
}

int server_pump(struct server *s)
{
    pump_fd(s, &s->out_fd, 1);
    pump_fd(s, &s->err_fd, 0);
    return s->out_fd < 0 && s->err_fd < 0;
}

/* Wait for either pipe to have something, bounded by deadline. */
void harness__wait_pipes(struct server *s, long long deadline, int max_ms)
{
    struct pollfd p[2];
    nfds_t n = 0;
    if (s->out_fd >= 0)
        p[n++] = (struct pollfd){.fd = s->out_fd, .events = POLLIN};
    if (s->err_fd >= 0)
        p[n++] = (struct pollfd){.fd = s->err_fd, .events = POLLIN};
    int ms = harness__left_ms(deadline);
    if (max_ms >= 0 && ms > max_ms)
        ms = max_ms;
    if (n == 0) {
        sleep_ms(ms);
        return;
    }
    poll(p, n, ms);
}

static int wait_needle(struct server *s, int on_stdout, const char *needle,
                       int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t nlen = strlen(needle);
    for (;;) {
        server_pump(s);
        const char *buf = on_stdout ? s->out : s->err;
        size_t len = on_stdout ? s->out_len : s->err_len;
        if (memmem(buf, len, needle, nlen))
            return 1;
        if ((on_stdout ? s->out_fd : s->err_fd) < 0 || now_ms() >= deadline)
            return 0;
        harness__wait_pipes(s, deadline, 100);
    }
}

int server_wait_output(struct server *s, const char *needle, int timeout_ms)
{
    return wait_needle(s, 1, needle, timeout_ms);
}

int server_wait_stderr(struct server *s, const char *needle, int timeout_ms)
{
    return wait_needle(s, 0, needle, timeout_ms);
}

int server_output_count(struct server *s, const char *needle)
{
    server_pump(s);
    return count_in(s->out, s->out_len, needle);
}

int server_stderr_count(struct server *s, const char *needle)
{
    server_pump(s);
    return count_in(s->err, s->err_len, needle);
}

void server_dump(struct server *s)
{
    server_pump(s);
    fprintf(stderr, "---- server %d: %s\n", (int)s->pid, s->address);
    if (s->exited)
        fprintf(stderr, "---- exited, status %d\n", s->status);
    fprintf(stderr, "---- stderr (%zu bytes):\n%s", s->err_len, s->err);
    fprintf(stderr, "---- stdout (%zu bytes, %zu dropped):\n%.4000s%s\n----\n",
            s->out_len, s->out_dropped, s->out, s->out_len > 4000 ? "..." : "");
}
