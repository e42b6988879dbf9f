/*
 * A growable byte buffer: bytes live in data[off, len). Consuming advances
 * `off`. Storage is allocated on first use and kept until iop__buf_free():
 * a blocking path reuses it; an event loop frees it when a connection goes
 * idle, so an idle connection holds no I/O memory.
 */
#ifndef IOP_BUF_H
#define IOP_BUF_H

#include <stddef.h>

struct iop__buf {
    char *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of the bytes held */
    size_t cap;
};

static inline size_t iop__buf_used(const struct iop__buf *b) { return b->len - b->off; }
static inline const char *iop__buf_head(const struct iop__buf *b) { return b->data + b->off; }

/* Make room for `want` more bytes at the end; returns the write position
 * or NULL (ENOMEM). Moves unconsumed bytes to the front when that is
 * enough. */
char *iop__buf_reserve(struct iop__buf *b, size_t want);
/* Record that n bytes were written at the position reserve() returned. */
void iop__buf_commit(struct iop__buf *b, size_t n);
int iop__buf_append(struct iop__buf *b, const void *p, size_t n);
void iop__buf_consume(struct iop__buf *b, size_t n);
void iop__buf_free(struct iop__buf *b);

#endif
