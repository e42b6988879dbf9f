/*
 * The uring model's receive buffers (the design is in uring.c): one group
 * per worker, from which the kernel picks a buffer only when bytes arrive.
 * Where the kernel has them, a ring of incrementally consumed 32 KiB
 * buffers (Linux 6.12, IOU_PBUF_RING_INC): a recv takes only the bytes it
 * needs, the next one continues at the offset tracked here, and a buffer
 * comes back once a CQE arrives without IORING_CQE_F_BUF_MORE. Else a
 * classic ring of 4 KiB buffers, one per CQE (5.19); else the same
 * buffers given with IORING_OP_PROVIDE_BUFFERS (5.7), one SQE per buffer
 * returned. Returned ring buffers are published (the tail advanced) once
 * per batch, just before the worker submits and waits.
 */
#define _GNU_SOURCE
#include "uring.h"

#ifdef IOPLEX_HAVE_URING

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

_Static_assert((URING_BUF_COUNT & (URING_BUF_COUNT - 1)) == 0 &&
                   (URING_INC_COUNT & (URING_INC_COUNT - 1)) == 0, "powers of two");

#ifndef IOU_PBUF_RING_INC /* liburing before 2.8 */
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* Register a ring of count buffers of size bytes; inc: incremental. */
static int bufring_try(struct uworker *w, unsigned count, unsigned size, int inc)
{
    size_t bytes = count * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)mem;
    reg.ring_entries = count;
    reg.bgid = URING_BGID;
    reg.pad = inc ? IOU_PBUF_RING_INC : 0; /* the flags field of newer headers */
    int r = -ENOMEM;
    w->bufs = malloc((size_t)count * size);
    w->buf_off = calloc(count, sizeof *w->buf_off);
    if (w->bufs && w->buf_off)
        r = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (r != 0) {
        free(w->bufs);
        free(w->buf_off);
        w->bufs = NULL;
        w->buf_off = NULL;
        munmap(mem, bytes);
        return r;
    }
    w->br = mem;
    w->br_bytes = bytes;
    w->buf_count = count;
    w->buf_size = size;
    w->inc = inc;
    io_uring_buf_ring_init(w->br);
    int mask = io_uring_buf_ring_mask(count);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * size, size, (unsigned short)i,
                              mask, (int)i);
    io_uring_buf_ring_advance(w->br, (int)count);
    return 0;
}

/* No ring (before 5.19): the same buffers, given the old way. Done before
 * anything else is in flight, so the one CQE to wait for is its own. */
static int bufs_provide(struct uworker *w, unsigned count)
{
    w->buf_count = count;
    w->buf_size = URING_BUF_SIZE;
    if (!(w->bufs = malloc((size_t)w->buf_count * w->buf_size)))
        return -ENOMEM;
    struct io_uring_sqe *sqe = iop__uring_sqe(w, UOP_IGNORE);
    io_uring_prep_provide_buffers(sqe, w->bufs, (int)w->buf_size, (int)w->buf_count,
                                  URING_BGID, 0);
    struct io_uring_cqe *cqe;
    int r = io_uring_submit_and_wait(&w->ring, 1);
    if (r >= 0)
        r = io_uring_peek_cqe(&w->ring, &cqe);
    if (r == 0) {
        r = cqe->res < 0 ? cqe->res : 0;
        io_uring_cqe_seen(&w->ring, cqe);
    }
    return r;
}

int iop__uring_bufs_setup(struct uworker *w, int fallback)
{
    /* Test hook: IOPLEX_URING_BUFFERS=N (a power of two) buffers of either
     * kind, so few that the ring runs dry (-ENOBUFS) under load. */
    const char *e = getenv("IOPLEX_URING_BUFFERS");
    unsigned n = e ? (unsigned)atoi(e) : 0;
    int few = n > 0 && n <= 1024 && (n & (n - 1)) == 0;
    if (fallback < 1 && bufring_try(w, few ? n : URING_INC_COUNT, URING_INC_SIZE, 1) == 0)
        return 0;
    if (fallback < 3 && bufring_try(w, few ? n : URING_BUF_COUNT, URING_BUF_SIZE, 0) == 0)
        return 0;
    int r = bufs_provide(w, few ? n : URING_BUF_COUNT);
    if (r != 0)
        iop_report(w->base.s, IOP_LOG_ERROR, "io_uring: cannot provide receive buffers: %s "
                   "(Linux 5.7 or later is needed)", strerror(-r));
    return r;
}

/* Where a recv CQE's bytes are. *ret is set to the buffer id if this CQE
 * ends the application's use of it (return it after use), else -1. */
const char *iop__uring_buf_data(struct uworker *w, unsigned bid, int res, unsigned flags,
                           int *ret)
{
    char *base = w->bufs + (size_t)bid * w->buf_size;
    *ret = (int)bid;
    if (!w->inc)
        return base;
    /* Incremental: this recv's bytes follow the previous ones in the same
     * buffer; the kernel goes on filling it while BUF_MORE is set. */
    const char *p = base + w->buf_off[bid];
    if (res > 0)
        w->buf_off[bid] += (unsigned)res;
    if (flags & IORING_CQE_F_BUF_MORE)
        *ret = -1;
    return p;
}

void iop__uring_buf_return(struct uworker *w, unsigned bid)
{
    if (!w->br) {
        io_uring_prep_provide_buffers(iop__uring_sqe(w, UOP_IGNORE),
                                      w->bufs + (size_t)bid * w->buf_size,
                                      (int)w->buf_size, 1, URING_BGID, (int)bid);
        return;
    }
    w->buf_off[bid] = 0;
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * w->buf_size, w->buf_size,
                          (unsigned short)bid, io_uring_buf_ring_mask(w->buf_count),
                          w->buf_pending++);
}

void iop__uring_bufs_publish(struct uworker *w)
{
    if (w->buf_pending) {
        io_uring_buf_ring_advance(w->br, w->buf_pending);
        w->buf_pending = 0;
    }
}

void iop__uring_bufs_free(struct uworker *w)
{
    if (w->br)
        munmap(w->br, w->br_bytes);
    free(w->bufs);
    free(w->buf_off);
    w->br = NULL;
    w->bufs = NULL;
    w->buf_off = NULL;
}

#endif /* IOPLEX_HAVE_URING */
