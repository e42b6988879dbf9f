#define _GNU_SOURCE
#include "outq.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define CHUNK_MIN 4096
#define OUTQ_IOV 64

struct iop_chunk {
    struct iop_chunk *next;
    size_t off, len, cap; /* unwritten bytes are data[off, len) */
    char data[];
};

static struct iop_chunk *chunk_new(size_t want)
{
    size_t cap = want < CHUNK_MIN ? CHUNK_MIN : want;
    if (cap > SIZE_MAX - sizeof(struct iop_chunk))
        return NULL;
    struct iop_chunk *c = malloc(sizeof *c + cap);
    if (c) {
        c->next = NULL;
        c->off = c->len = 0;
        c->cap = cap;
    }
    return c;
}

int iop_outq_reserve(struct iop_outq *q, size_t n)
{
    if (q->tail && q->tail->cap - q->tail->len >= n)
        return 0;
    struct iop_chunk *c = chunk_new(n);
    if (!c)
        return -ENOMEM;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    return 0;
}

int iop_outq_append(struct iop_outq *q, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    /* Fill the tail's free room first, then one new chunk for the rest. */
    struct iop_chunk *t = q->tail;
    if (t && t->cap > t->len) {
        size_t k = t->cap - t->len < n ? t->cap - t->len : n;
        memcpy(t->data + t->len, p, k);
        t->len += k;
        q->bytes += k;
        p = (const char *)p + k;
        n -= k;
        if (n == 0)
            return 0;
    }
    if (iop_outq_reserve(q, n) != 0)
        return -ENOMEM;
    t = q->tail;
    memcpy(t->data + t->len, p, n);
    t->len += n;
    q->bytes += n;
    return 0;
}

int iop_outq_iov(const struct iop_outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (struct iop_chunk *c = q->head; c && n < max; c = c->next)
        if (c->len > c->off)
            iov[n++] = (struct iovec){c->data + c->off, c->len - c->off};
    return n;
}

void iop_outq_consume(struct iop_outq *q, size_t n)
{
    size_t left = n;
    q->bytes -= left;
    struct iop_chunk *c;
    while ((c = q->head) != NULL) {
        size_t k = c->len - c->off < left ? c->len - c->off : left;
        c->off += k;
        left -= k;
        /* Stop at unwritten bytes, or at a chunk reserved but not filled. */
        if (c->off < c->len || c->len == 0)
            break;
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        free(c);
    }
}

ssize_t iop_outq_write(struct iop_outq *q, int fd, int flags)
{
    struct iovec iov[OUTQ_IOV];
    int n = iop_outq_iov(q, iov, OUTQ_IOV);
    if (n == 0)
        return 0;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    iop_outq_consume(q, (size_t)w);
    return w;
}

void iop_outq_free(struct iop_outq *q)
{
    while (q->head) {
        struct iop_chunk *c = q->head;
        q->head = c->next;
        free(c);
    }
    q->tail = NULL;
    q->bytes = 0;
}
