/*
 * A connection's output queue: a list of chunks written with one
 * sendmsg() (a writev with MSG_NOSIGNAL) of up to OUTQ_IOV of them.
 * Appending never moves what is queued, and memory goes back chunk by
 * chunk as the peer takes it. An empty queue holds no memory. Chunks are
 * all CHUNK_SIZE (16 KiB) and recycled through a per-thread cache.
 */
#ifndef IOP_OUTQ_H
#define IOP_OUTQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

struct iop_chunk;
struct iovec;

struct iop_outq {
    struct iop_chunk *head, *tail;
    /* Queued, not yet written. Written only by the queue's owner, but read
     * by other threads too (iop_post() judges a receiver's backlog at post
     * time): atomic, with relaxed stores here, which cost a plain store. */
    _Atomic size_t bytes;
};

int iop_outq_append(struct iop_outq *q, const void *p, size_t n);
/* Make sure n more bytes can be appended without failing. */
int iop_outq_reserve(struct iop_outq *q, size_t n);
/* One sendmsg(); returns bytes written or a negative errno (-EAGAIN when
 * the socket is full). flags are added to MSG_NOSIGNAL. */
ssize_t iop_outq_write(struct iop_outq *q, int fd, int flags);
/* The same in two halves, for a writer that is not a sendmsg() call (an
 * io_uring send): the unwritten bytes as at most max iovecs (the count is
 * returned; the memory stays put until consumed, whatever is appended
 * meanwhile), and then the n bytes that were written, dropped and their
 * chunks freed. */
int iop_outq_iov(const struct iop_outq *q, struct iovec *iov, int max);
void iop_outq_consume(struct iop_outq *q, size_t n);
void iop_outq_free(struct iop_outq *q);

#endif
