/*
 * What the parts of the uring model share (design: uring.c): uring.c
 * has the ring, the workers, accepting, datagrams and stopping;
 * uring_conn.c the stream connection's path (recv, send, watermarks,
 * lingering close, idle timeout); uring_buf.c the receive buffers. Nothing here is locked: a worker, its
 * ring and its connections belong to one thread.
 */
#ifndef IOP_MODEL_URING_H
#define IOP_MODEL_URING_H

#ifdef IOPLEX_HAVE_URING

#include "internal.h"
#include "model/workers.h"
#include "stream/connset.h"

#include <liburing.h>
#include <stdalign.h>
#include <stddef.h>
#include <sys/uio.h>

/* The provided buffer ring: 512 KiB per worker either way, touched as it
 * is used; it bounds what a recv reads past the high watermark.
 * Incremental (Linux 6.12): each recv takes only what it needs from the
 * current buffer, so 64-byte messages from a thousand connections share
 * a few buffers. Classic: each recv CQE takes a whole buffer. */
#define URING_INC_SIZE 32768
#define URING_INC_COUNT 16
#define URING_BUF_SIZE 4096
#define URING_BUF_COUNT 128
#define URING_BGID 1          /* the buffer group of every worker's ring */
#define URING_SEND_IOV 16     /* output chunks per send */
/* Output up to URING_SLOT_BIG is copied into a slot of the worker's and
 * sent from there (see start_send() in uring_conn.c); free slots are kept,
 * at most URING_SLOTS_KEPT of each size. */
#define URING_SLOT_SMALL 512
#define URING_SLOT_BIG 16384
#define URING_SLOTS_KEPT 256
#define URING_SCRATCH 65536   /* synchronous reads at stop, datagrams */

/*
 * user_data: values below UOP_LIMIT are a worker's own operations (one
 * ring per worker, so the worker is implied); anything else is a
 * connection pointer (malloc'd, so at least 8-aligned) with the operation
 * in its three low bits.
 */
enum {
    UOP_IGNORE = 0, /* cancellations: their own CQEs carry nothing */
    UOP_ACCEPT,
    UOP_STOP,       /* poll on the stop pipe */
    UOP_SWEEP,      /* idle timeouts and lingering closes */
    UOP_DRAIN,      /* the end of a graceful stop */
    UOP_RESUME,     /* accepting again after EMFILE */
    UOP_DGRAM,      /* recvmsg on a datagram socket */
    UOP_MAIL,       /* poll on the mailbox's eventfd (iop_post) */
    UOP_LIMIT = 16,
};
enum { COP_RECV = 1, COP_SEND = 2, COP_MASK = 7 };

struct uconn {
    iop_conn c;            /* first: what the service holds */
    unsigned inflight;     /* SQEs whose last CQE has not come yet */
    unsigned char recv_on; /* a recv is in flight (multishot: until a CQE without MORE) */
    unsigned char recv_cancel; /* and a cancel for it has been sent */
    unsigned char send_on; /* a send is in flight */
    unsigned char send_cancel;
    unsigned char stop_read; /* stopping: read the rest once the recv has ended */
    /* A sendmsg in flight: allocated for output of several chunks and
     * freed when the output queue empties, so an idle connection is this
     * struct alone. */
    struct usendmsg *sm;
    /* A small send in flight: its bytes, copied out of the output queue
     * (which freed them at once), from the worker's slots. */
    char *slot;
    unsigned short slot_off, slot_len;
    unsigned char slot_big;   /* which size the slot is */
};

struct usendmsg {
    struct msghdr msg;
    struct iovec iov[URING_SEND_IOV];
};

struct uworker {
    struct iop__worker base; /* server, listener, acceptor: model/workers.h */
    struct iop__connset set; /* the connections and their rules (connset.h) */
    struct io_uring ring;
    int ring_ok;
    int ms_accept, ms_recv; /* multishot accept / recv (cleared on -EINVAL) */
    int accept_proven, recv_proven; /* a multishot op has worked once */
    /* The provided buffers: a ring (br), or without one (before Linux
     * 5.19) the same buffers given with IORING_OP_PROVIDE_BUFFERS. */
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *bufs;
    unsigned buf_size, buf_count;
    int inc;                /* incremental consumption (IOU_PBUF_RING_INC) */
    unsigned *buf_off;      /* incremental: where each buffer's next bytes go */
    int buf_pending;        /* returned, not yet published (advance) */
    unsigned long enobufs;  /* recvs ended because the ring ran dry */
    int dgram;              /* the listener is a datagram socket */
    /* Operations of the worker's own, in flight (sweeps: how many). */
    int accept_on, accept_cancel, stop_on, sweep_on, drain_on, resume_on, dgram_on;
    int accept_paused, accepted, drain_fired;
    struct sockaddr_storage acc_addr; /* single-shot accept's peer */
    socklen_t acc_len;
    struct __kernel_timespec sweep_ts, drain_ts, resume_ts;
    struct msghdr dmsg;
    struct iovec diov;
    struct sockaddr_storage daddr;
    struct iop__dgram *gate; /* datagrams: net/dgram.c */
    char *scratch;
    int mail_on;            /* the set's mailbox is polled (iop_post) */
    void *slots[2];         /* free send slots: small, big */
    unsigned nslots[2];
    struct iop__connlist dying; /* closed, with operations still in flight */
    size_t nconns;          /* allocated, not yet freed */
    int broken;             /* the ring failed (negative errno): leave */
    struct io_uring_sqe sink; /* where SQEs go once it has */
};

/* uring_buf.c: the receive buffers */
int iop__uring_bufs_setup(struct uworker *w, int fallback);
/* Make the buffers returned since the last call visible to the kernel. */
void iop__uring_bufs_publish(struct uworker *w);
void iop__uring_bufs_free(struct uworker *w);
/* Where a recv CQE's bytes are; *ret: the buffer id to give back with
 * iop__uring_buf_return() once they are used, or -1 (still the kernel's). */
const char *iop__uring_buf_data(struct uworker *w, unsigned bid, int res, unsigned flags,
                           int *ret);
void iop__uring_buf_return(struct uworker *w, unsigned bid);

/* uring.c */
struct io_uring_sqe *iop__uring_sqe(struct uworker *w, uint64_t user_data);
void iop__uring_cancel(struct uworker *w, uint64_t user_data);
/* A connection's descriptor was closed and its memory freed. */
void iop__uring_conn_closed(struct uworker *w);

/* uring_conn.c: the mechanism under the worker's connection set */
extern const struct iop__connset_ops iop__uring_conn_ops;
void iop__uring_conn_open(struct uworker *w, int fd, const struct sockaddr_storage *peer,
                     socklen_t len);
void iop__uring_conn_cqe(struct uworker *w, struct uconn *u, unsigned op, int res,
                    unsigned flags);
void iop__uring_conns_stop(struct uworker *w);
/* Free what is left after the ring is gone (ops abandoned at a forced exit). */
void iop__uring_conns_free_all(struct uworker *w);
void iop__uring_slots_free(struct uworker *w);

static inline uint64_t iop__uring_ud(struct uconn *u, unsigned op)
{
    return (uint64_t)(uintptr_t)u | op;
}

#endif /* IOPLEX_HAVE_URING */
#endif
