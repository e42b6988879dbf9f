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

struct iop__chunk;
struct iovec;

struct iop__outq {
    struct iop__chunk *head, *tail;
    /* Queued, not yet written. Written only by the queue's owner, but read
     * by other threads too (iop_post() judges a receiver's backlog at post
     * time): atomic, with relaxed stores here, which cost a plain store. */
    _Atomic size_t bytes;
};

int iop__outq_append(struct iop__outq *q, const void *p, size_t n);
/* Make sure n more bytes can be appended without failing. */
int iop__outq_reserve(struct iop__outq *q, size_t n);
/* One sendmsg(); returns bytes written or a negative errno (-EAGAIN when
 * the socket is full). flags are added to MSG_NOSIGNAL. */
ssize_t iop__outq_write(struct iop__outq *q, int fd, int flags);
/* The same in two halves, for a writer that is not a sendmsg() call (an
 * io_uring send): the unwritten bytes as at most max iovecs (the count is
 * returned; the memory stays put until consumed, whatever is appended
 * meanwhile), and then the n bytes that were written, dropped and their
 * chunks freed. */
int iop__outq_iov(const struct iop__outq *q, struct iovec *iov, int max);
void iop__outq_consume(struct iop__outq *q, size_t n);
void iop__outq_free(struct iop__outq *q);

#endif
