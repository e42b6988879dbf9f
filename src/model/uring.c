/*
 * uring: the completion-based model, on io_uring (liburing). The kernel
 * does the accepts, receives and sends, and the loop only reacts to what
 * has been done: each worker owns one ring, and one io_uring_enter()
 * submits a batch and waits for the next. This file has the ring, the
 * workers, accepting, datagrams and stopping; uring_conn.c the mechanism
 * under the connection set (recv and send completions); uring_buf.c the
 * provided receive buffers; uring.h what they share. The flow, user_data,
 * stale completions, the buffer rings, sends, stop, workers, fallbacks and
 * the test hooks: docs/models.md, "uring, in detail".
 */
#define _GNU_SOURCE
#include "uring.h"

#ifdef IOPLEX_HAVE_URING

#include "model/workers.h"
#include "net/acceptor.h"
#include "net/dgram.h"
#include "stream/mailbox.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096
#define CQE_BATCH 128
#define EXIT_REAP_MS 1000   /* bound on reaping the worker's own operations */
#define DRAIN_GRACE_MS 2000 /* after drain_ms: cancellations must be done by then */

_Static_assert(alignof(max_align_t) >= 8, "user_data keeps the op in 3 low bits");

/* ---- the check: can io_uring be used here at all? ------------------------------ */

static int uring_check(char *err)
{
    int r;
    const char *why = "";
    const char *off = getenv("IOPLEX_URING_DISABLE"); /* test hook */
    if (off && *off && strcmp(off, "0") != 0) {
        r = -ENOSYS;
        why = " (IOPLEX_URING_DISABLE is set)";
    } else {
        struct io_uring ring;
        r = io_uring_queue_init(2, &ring, 0);
        if (r == 0) {
            io_uring_queue_exit(&ring);
            return 0;
        }
        if (r == -EPERM)
            why = " (sysctl kernel.io_uring_disabled, or a seccomp filter)";
        else if (r == -ENOSYS)
            why = " (the kernel has no io_uring)";
        else if (r == -ENOMEM)
            why = " (RLIMIT_MEMLOCK too low?)";
    }
    snprintf(err, IOP_ERR_LEN, "io_uring is not available here: %s%s; use -m epoll",
             strerror(-r), why);
    return -ENOSYS; /* "cannot run here": a system error, whatever the cause */
}

/* ---- SQEs ------------------------------------------------------------------------ */

struct io_uring_sqe *iop__uring_sqe(struct uworker *w, uint64_t user_data)
{
    struct io_uring_sqe *sqe = w->ring_ok ? io_uring_get_sqe(&w->ring) : NULL;
    for (int i = 0; !sqe && w->ring_ok && !w->broken && i < 1000; i++) {
        /* The SQ is full: hand what is there to the kernel (with the
         * buffers returned so far, for the recvs among it). */
        if (w->br)
            iop__uring_bufs_publish(w);
        int r = io_uring_submit(&w->ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            w->broken = r;
        sqe = io_uring_get_sqe(&w->ring);
    }
    if (!sqe) {
        /* The ring is broken (or gone, at the exit): the operation goes
         * nowhere, and the loop ends with the error (what is left is
         * freed at the exit). */
        if (!w->broken && w->ring_ok)
            w->broken = -EBUSY;
        sqe = &w->sink;
    }
    io_uring_sqe_set_data64(sqe, user_data);
    return sqe;
}

void iop__uring_cancel(struct uworker *w, uint64_t user_data)
{
    io_uring_prep_cancel64(iop__uring_sqe(w, UOP_IGNORE), user_data, 0);
}

static void arm_timeout(struct uworker *w, unsigned op, struct __kernel_timespec *ts,
                        uint64_t ms)
{
    ts->tv_sec = (long long)(ms / 1000);
    ts->tv_nsec = (long long)(ms % 1000) * 1000000;
    io_uring_prep_timeout(iop__uring_sqe(w, op), ts, 0, 0);
}

/* ---- the ring ---------------------------------------------------------------------- */

static int ring_init(struct uworker *w, const char **mode)
{
    static const struct {
        unsigned flags;
        const char *name;
    } tries[] = {
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
             IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE, "DEFER_TASKRUN"},
        {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE,
         "COOP_TASKRUN"},
        {IORING_SETUP_CQSIZE, "plain"},
        {0, "plain, small CQ"},
    };
    int r = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i].flags;
        p.cq_entries = CQ_ENTRIES;
        r = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &p);
        if (r == 0) {
            *mode = tries[i].name;
            w->ring_ok = 1;
            /* The ring's own descriptor registered (5.18): no fget() of it
             * on each io_uring_enter(). Optional. */
            io_uring_register_ring_fd(&w->ring);
            return 0;
        }
        if (r != -EINVAL)
            break;
    }
    return r;
}

/* ---- accepting -------------------------------------------------------------------- */

static void arm_accept(struct uworker *w)
{
    iop_server *s = w->base.s;
    if (w->accept_on || w->set.stopping || w->accept_paused || (s->cfg.once && w->accepted))
        return;
    struct io_uring_sqe *sqe = iop__uring_sqe(w, UOP_ACCEPT);
    if (w->ms_accept) {
        io_uring_prep_multishot_accept(sqe, w->base.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } else {
        w->acc_len = sizeof w->acc_addr;
        io_uring_prep_accept(sqe, w->base.listen_fd, (struct sockaddr *)&w->acc_addr,
                             &w->acc_len, SOCK_CLOEXEC);
    }
    w->accept_on = 1;
}

static void cancel_accept(struct uworker *w)
{
    if (w->accept_on && !w->accept_cancel) {
        iop__uring_cancel(w, UOP_ACCEPT);
        w->accept_cancel = 1;
    }
}

/* Out of accepting until a connection closes or the pause is over: the
 * failure lasts while descriptors are out (nginx's accept pause). */
static void pause_accept(struct uworker *w, int ms)
{
    w->accept_paused = 1;
    cancel_accept(w);
    if (!w->resume_on) {
        arm_timeout(w, UOP_RESUME, &w->resume_ts, (uint64_t)ms);
        w->resume_on = 1;
    }
}

static void resume_accept(struct uworker *w)
{
    if (!w->accept_paused || w->set.stopping)
        return;
    w->accept_paused = 0;
    arm_accept(w);
}

void iop__uring_conn_closed(struct uworker *w)
{
    iop_server *s = w->base.s;
    atomic_fetch_sub(w->base.live, 1);
    resume_accept(w); /* a descriptor was just freed */
    if (s->cfg.once && w->accepted && atomic_load(w->base.live) == 0)
        iop_server_stop(s);
}

static void take(struct uworker *w, int fd, struct sockaddr_storage *peer, socklen_t len)
{
    iop_server *s = w->base.s;
    if (!iop__acceptor_take(&w->base.acc, fd, atomic_load(w->base.live)))
        return; /* refused (and closed) */
    atomic_fetch_add(w->base.live, 1);
    w->accepted = 1;
    if (s->cfg.once) /* the first client only */
        cancel_accept(w);
    iop__uring_conn_open(w, fd, peer, len);
}

static void on_accept(struct uworker *w, int res, unsigned flags)
{
    iop_server *s = w->base.s;
    if (!(flags & IORING_CQE_F_MORE)) {
        w->accept_on = 0;
        w->accept_cancel = 0;
    }
    if (res >= 0) {
        if (w->ms_accept)
            w->accept_proven = 1;
        if (w->set.stopping || (s->cfg.once && w->accepted)) {
            close(res); /* accepted before the cancel took effect */
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (w->ms_accept) {
            if (getpeername(res, (struct sockaddr *)&peer, &len) != 0)
                len = 0;
        } else {
            peer = w->acc_addr;
            len = w->acc_len;
        }
        take(w, res, &peer, len);
        /* Caught up? A multishot accept has no EAGAIN to say so: ask the
         * listener, only while an episode could end (net/acceptor.h). */
        if (iop__acceptor_may_catch_up(&w->base.acc) && iop__acceptor_listener_idle(&w->base.acc))
            iop__acceptor_caught_up(&w->base.acc);
    } else if (res == -EINVAL && w->ms_accept && !w->accept_proven) {
        w->ms_accept = 0;
        iop_report(s, IOP_LOG_INFO, "uring: no multishot accept on this kernel; "
                   "using single-shot accept");
    } else if (res == -ECANCELED || res == -EINTR || res == -ECONNABORTED ||
               res == -EPROTO || res == -EAGAIN) {
        /* nothing to do (armed again below unless stopping or paused) */
    } else {
        int ms = iop__acceptor_failed(&w->base.acc, res); /* EMFILE, ENFILE, ENOBUFS, ... */
        if (ms > 0)
            pause_accept(w, ms);
    }
    arm_accept(w);
}

/* ---- datagrams ------------------------------------------------------------------- */

static void arm_dgram(struct uworker *w)
{
    if (w->dgram_on || w->set.stopping)
        return;
    w->diov.iov_base = w->scratch;
    w->diov.iov_len = URING_SCRATCH;
    memset(&w->dmsg, 0, sizeof w->dmsg);
    w->dmsg.msg_name = &w->daddr;
    w->dmsg.msg_namelen = sizeof w->daddr;
    w->dmsg.msg_iov = &w->diov;
    w->dmsg.msg_iovlen = 1;
    io_uring_prep_recvmsg(iop__uring_sqe(w, UOP_DGRAM), w->base.listen_fd, &w->dmsg, MSG_TRUNC);
    w->dgram_on = 1;
}

static void on_dgram(struct uworker *w, int res)
{
    iop_server *s = w->base.s;
    w->dgram_on = 0;
    if (res == -ECANCELED)
        return;
    if (res >= 0) { /* else an ICMP error on UDP: nothing to do */
        struct iop_peer p = {.server = s, .fd = w->base.listen_fd};
        memcpy(&p.addr, &w->daddr, sizeof p.addr);
        p.addrlen = w->dmsg.msg_namelen;
        int truncated = res > URING_SCRATCH || (w->dmsg.msg_flags & MSG_TRUNC);
        size_t len = truncated ? URING_SCRATCH : (size_t)res;
        /* Checked, counted or served: net/dgram.c. */
        if (iop__dgram_input(w->gate, &p, w->scratch, len, truncated) && s->cfg.once) {
            iop_server_stop(s);
            return;
        }
    }
    arm_dgram(w);
}

/* ---- posts from other threads (iop_post) ------------------------------------------ */

static void arm_mail(struct uworker *w)
{
    if (w->mail_on || !w->set.mbox)
        return;
    io_uring_prep_poll_add(iop__uring_sqe(w, UOP_MAIL), iop__connset_mailbox_fd(&w->set), POLLIN);
    w->mail_on = 1;
}

/* ---- stopping --------------------------------------------------------------------- */

static void on_stop(struct uworker *w)
{
    w->set.stopping = 1;
    w->accept_paused = 0;
    cancel_accept(w);
    if (w->dgram_on)
        iop__uring_cancel(w, UOP_DGRAM);
    if (w->base.owns_listener && w->base.listen_fd >= 0) {
        /* Connections still in its queue are reset now rather than left
         * to wait (the operations hold the socket until they end). */
        close(w->base.listen_fd);
        w->base.listen_fd = -1;
    }
    if (w->nconns == 0)
        return;
    arm_timeout(w, UOP_DRAIN, &w->drain_ts, (uint64_t)w->base.s->cfg.drain_ms);
    w->drain_on = 1;
    iop__uring_conns_stop(w);
}

static void on_drain_expired(struct uworker *w)
{
    if (w->drain_fired++ == 0) {
        iop__connset_drain_expired(&w->set);
        if (w->nconns > 0) { /* cancellations on their way: a last bound */
            arm_timeout(w, UOP_DRAIN, &w->drain_ts, DRAIN_GRACE_MS);
            w->drain_on = 1;
        }
    }
}

/* ---- the loop ------------------------------------------------------------------------ */

static void handle(struct uworker *w, uint64_t ud, int res, unsigned flags)
{
    if (ud >= UOP_LIMIT) {
        struct uconn *u = (struct uconn *)(uintptr_t)(ud & ~(uint64_t)COP_MASK);
        iop__uring_conn_cqe(w, u, (unsigned)(ud & COP_MASK), res, flags);
        return;
    }
    switch (ud) {
    case UOP_ACCEPT:
        on_accept(w, res, flags);
        break;
    case UOP_STOP:
        w->stop_on = 0;
        if (res != -ECANCELED && !w->set.stopping)
            on_stop(w);
        break;
    case UOP_SWEEP:
        w->sweep_on--;
        if (res != -ECANCELED)
            iop__connset_sweep(&w->set);
        break;
    case UOP_DRAIN:
        w->drain_on = 0;
        if (res != -ECANCELED)
            on_drain_expired(w);
        break;
    case UOP_RESUME:
        w->resume_on = 0;
        if (res != -ECANCELED)
            resume_accept(w);
        break;
    case UOP_DGRAM:
        on_dgram(w, res);
        break;
    case UOP_MAIL:
        w->mail_on = 0;
        if (res != -ECANCELED) {
            iop__mailbox_drain(w->set.mbox);
            arm_mail(w);
        }
        break;
    default: /* UOP_IGNORE */
        break;
    }
}

/* Wait for completions (at most timeout_ms if >= 0) and handle them.
 * Returns 0 or a negative errno from the ring. */
static int turn(struct uworker *w, int timeout_ms)
{
    if (w->br)
        iop__uring_bufs_publish(w);
    int r;
    if (timeout_ms >= 0) {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        struct io_uring_cqe *cqe;
        r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
    } else {
        r = io_uring_submit_and_wait(&w->ring, 1);
    }
    if (r < 0 && r != -EINTR && r != -ETIME && r != -EAGAIN && r != -EBUSY)
        return r;
    w->set.now = iop__now_ms();
    /* What completes while this turn submits (a full SQ) is mostly left
     * for the next turn: the loop is bounded, so the buffers returned in
     * it get published and the kicked connections settled. */
    for (int batches = 0; batches < CQ_ENTRIES / CQE_BATCH; batches++) {
        struct io_uring_cqe *cqes[CQE_BATCH];
        unsigned n = io_uring_peek_batch_cqe(&w->ring, cqes, CQE_BATCH);
        if (n == 0)
            break;
        struct {
            uint64_t ud;
            int res;
            unsigned flags;
        } got[CQE_BATCH];
        for (unsigned i = 0; i < n; i++) {
            got[i].ud = cqes[i]->user_data;
            got[i].res = cqes[i]->res;
            got[i].flags = cqes[i]->flags;
        }
        io_uring_cq_advance(&w->ring, n);
        for (unsigned i = 0; i < n; i++)
            handle(w, got[i].ud, got[i].res, got[i].flags);
        if (n < CQE_BATCH)
            break;
    }
    if (w->set.nkicked)
        iop__connset_run_kicked(&w->set);
    return 0;
}

static int worker_ops_on(const struct uworker *w)
{
    return w->accept_on || w->stop_on || w->sweep_on || w->drain_on || w->resume_on ||
           w->dgram_on || w->mail_on;
}

/* Cancel the worker's own operations and reap them, bounded. */
static void worker_quiesce(struct uworker *w)
{
    w->set.stopping = 1;
    static const unsigned ops[] = {UOP_ACCEPT, UOP_STOP, UOP_SWEEP, UOP_DRAIN,
                                   UOP_RESUME, UOP_DGRAM, UOP_MAIL};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        iop__uring_cancel(w, ops[i]);
    uint64_t until = iop__now_ms() + EXIT_REAP_MS;
    while ((worker_ops_on(w) || w->nconns > 0) && iop__now_ms() < until)
        if (turn(w, 100) != 0)
            break;
}

static void *worker_main(void *arg)
{
    struct uworker *w = arg;
    iop_server *s = w->base.s;
    const char *mode = "";
    w->dgram = !iop_transport_is_stream(s->cfg.addr.transport);
    const char *fb = getenv("IOPLEX_URING_FALLBACK"); /* test hook */
    int fallback = fb ? atoi(fb) : 0;
    w->ms_accept = w->ms_recv = fallback < 2;
    int r = ring_init(w, &mode);
    if (r != 0)
        iop_report(s, IOP_LOG_ERROR, "io_uring: %s", strerror(-r));
    if (r == 0 && !(w->scratch = malloc(URING_SCRATCH)))
        r = -ENOMEM;
    if (r == 0 && !w->dgram)
        r = iop__uring_bufs_setup(w, fallback);
    if (r == 0 && w->dgram && !(w->gate = iop__dgram_new(s, w->base.listen_fd)))
        r = -ENOMEM;
    if (!w->br)
        w->ms_recv = 0; /* kernels with multishot recv have buffer rings */
    if (r == 0 && (r = iop__connset_init(&w->set, s, &iop__uring_conn_ops, w)) == 0)
        arm_mail(w); /* the set's mailbox, this thread's (iop_post) */
    if (r == 0) {
        char bufs[96];
        snprintf(bufs, sizeof bufs, " from %s (%u x %u bytes)",
                 w->inc ? "an incremental buffer ring" : w->br ? "a buffer ring"
                 : "provided buffers (no ring)", w->buf_count, w->buf_size);
        iop_report(s, IOP_LOG_DEBUG, "uring worker: ring %s; %s accept; %s recv%s",
                   mode, w->ms_accept ? "multishot" : "single-shot",
                   w->ms_recv ? "multishot" : "single-shot",
                   w->dgram ? "msg (datagrams)" : bufs);
        w->set.now = iop__now_ms();
        io_uring_prep_poll_add(iop__uring_sqe(w, UOP_STOP), s->stop_pipe[0], POLLIN);
        w->stop_on = 1;
        if (w->dgram)
            arm_dgram(w);
        else
            arm_accept(w);
        while (!(w->set.stopping && w->nconns == 0) && w->drain_fired < 2) {
            r = w->broken ? w->broken : turn(w, -1);
            if (r != 0) {
                iop_report(s, IOP_LOG_ERROR, "io_uring_enter: %s", strerror(-r));
                break;
            }
        }
        if (w->drain_fired >= 2 && w->nconns > 0)
            iop_report(s, IOP_LOG_ERROR, "uring: %zu connections did not finish "
                       "their cancellations", w->nconns);
    }
    if (w->ring_ok) {
        if (r == 0 && !w->broken)
            worker_quiesce(w);
        if (w->br)
            io_uring_unregister_buf_ring(&w->ring, URING_BGID);
        io_uring_queue_exit(&w->ring);
        w->ring_ok = 0; /* from here on, SQEs go to w->sink */
    }
    w->set.stopping = 1; /* nothing is armed again */
    /* Whatever is left had an operation the ring took with it. */
    if (w->set.s)
        iop__connset_free(&w->set); /* closes what is left */
    iop__uring_conns_free_all(w);
    iop__uring_slots_free(w);
    iop__uring_bufs_free(w);
    free(w->scratch);
    iop__dgram_free(w->gate); /* an episode still open is reported */
    w->gate = NULL;
    w->base.result = r;
    if (r != 0)
        iop_server_stop(s); /* one worker failing stops the others */
    return NULL;
}

static int run_uring(iop_server *s)
{
    unsigned n = s->cfg.workers ? s->cfg.workers : 1;
    struct uworker *ws = calloc(n, sizeof *ws);
    if (!ws)
        return -ENOMEM;
    atomic_uint live = 0;
    for (unsigned i = 0; i < n; i++)
        iop__worker_init(&ws[i].base, s, i, &live);
    int r = iop__run_workers(s, ws, n, sizeof *ws, worker_main);
    for (unsigned i = 0; i < n; i++) {
        int wr = iop__worker_done(&ws[i].base);
        if (r == 0)
            r = wr;
    }
    free(ws);
    return r;
}

const struct iop__model iop__model_uring = {
    .info = {.name = "uring",
             .summary = "one process, io_uring completions: multishot accept and recv, "
                        "provided buffers (-w N: N rings)",
             .datagram = 1,
             .shared_state = 1},
    .backend = "io_uring",
    .one_listener = 1,
    .run = run_uring,
    .check = uring_check,
};

#endif /* IOPLEX_HAVE_URING */
