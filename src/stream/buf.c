#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define IOP_BUF_MIN 4096

char *iop__buf_reserve(struct iop__buf *b, size_t want)
{
    if (want == 0)
        want = 1; /* an empty buffer has no storage to point into */
    if (b->cap - b->len >= want)
        return b->data + b->len;
    size_t used = iop__buf_used(b);
    /* Sliding the live bytes down is cheaper than growing when it suffices. */
    if (b->off > 0 && b->cap - used >= want) {
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
        return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : IOP_BUF_MIN;
    while (cap - used < want) {
        if (cap > ((size_t)-1) / 2) {
            errno = ENOMEM;
            return NULL;
        }
        cap *= 2;
    }
    char *p = malloc(cap);
    if (!p)
        return NULL;
    if (used)
        memcpy(p, b->data + b->off, used);
    free(b->data);
    b->data = p;
    b->off = 0;
    b->len = used;
    b->cap = cap;
    return b->data + b->len;
}

void iop__buf_commit(struct iop__buf *b, size_t n)
{
    b->len += n;
}

int iop__buf_append(struct iop__buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    char *dst = iop__buf_reserve(b, n);
    if (!dst)
        return -ENOMEM;
    memcpy(dst, p, n);
    b->len += n;
    return 0;
}

void iop__buf_consume(struct iop__buf *b, size_t n)
{
    b->off += n;
    if (b->off == b->len)
        b->off = b->len = 0; /* keep the storage: the caller decides when to free */
}

void iop__buf_free(struct iop__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
