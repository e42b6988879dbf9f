/*
 * aio: POSIX asynchronous I/O (aio_read, aio_write) driven by one thread:
 * every connection has one aio_read outstanding into its own buffer; a
 * completion is dispatched to the service, and the replies go out with
 * aio_write. Completions arrive as a real-time signal read with
 * signalfd(), polled with the listener and the stop pipe. The rules every
 * connection obeys are the connection set's (src/stream/connset.c); this
 * file is the mechanism. glibc's helper threads, the descriptor twin for
 * writes, the notification's safety nets and closing without a
 * completion landing in freed memory: docs/models.md, "aio, in detail".
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
#include "stream/connset.h"

#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define AIO_SIGNAL (SIGRTMIN + 4)
#define READ_CHUNK 16384
#define ACCEPT_BATCH 64
#define SCAN_MS 1000
#define TEARDOWN_MS 2000
#define AIO_CONNS_MAX 16384
#define SIGINFO_BATCH 64

enum { OP_READ, OP_WRITE };

struct aconn {
    iop_conn c;          /* first: what the service holds */
    struct aiocb op[2];  /* OP_READ on c.fd, OP_WRITE on wfd */
    unsigned busy;       /* bit per op: submitted, completion not yet taken */
    int wfd;             /* dup(c.fd): glibc serializes requests per descriptor */
    unsigned slot;
    char *rbuf;
};

struct aloop {
    struct iop__connset set; /* the connections and their rules (connset.h) */
    iop_server *s;
    struct aconn **slot; /* slot number -> connection (NULL: free) */
    unsigned *free_slots;
    size_t nslots, nfree, cap; /* slots in use so far, free ones, limit */
    size_t nconns;       /* every connection not yet freed */
    size_t inflight;     /* requests outstanding */
    int sfd;             /* signalfd for AIO_SIGNAL */
    int spare;           /* held in reserve for a connection's wfd: see take() */
    int hint[2];         /* AIO_SIGNAL taken by another thread: scan */
    uint64_t drain_end;
    int drained;         /* drain_ms passed: everything was closed */
    int accepted;        /* --once */
    uint64_t accept_resume; /* accepting paused until then (EMFILE, ...) */
    struct iop__acceptor acc;  /* the accept policy: net/acceptor.h */
    uint64_t next_scan;
};

static struct aconn *of(iop_conn *c) { return (struct aconn *)c; }
static struct aloop *loop_of(struct iop__connset *set) { return set->owner; }

/* ---- the stray-signal net ---------------------------------------------------- */

static atomic_int hint_fd = -1;

static void on_stray(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    int saved = errno;
    int fd = atomic_load(&hint_fd);
    if (fd >= 0) {
        ssize_t n = write(fd, "s", 1);
        (void)n; /* full: a scan is pending anyway */
    }
    errno = saved;
}

/* ---- slots ----------------------------------------------------------------- */

static int slot_get(struct aloop *L, struct aconn *a)
{
    if (L->nfree > 0) {
        a->slot = L->free_slots[--L->nfree];
    } else {
        if (L->nslots % 256 == 0) {
            size_t cap = L->nslots + 256;
            struct aconn **p = realloc(L->slot, cap * sizeof *p);
            if (!p)
                return -ENOMEM;
            L->slot = p;
            unsigned *f = realloc(L->free_slots, cap * sizeof *f);
            if (!f)
                return -ENOMEM;
            L->free_slots = f;
        }
        a->slot = (unsigned)L->nslots++;
    }
    L->slot[a->slot] = a;
    return 0;
}

static void slot_put(struct aloop *L, struct aconn *a)
{
    L->slot[a->slot] = NULL;
    L->free_slots[L->nfree++] = a->slot;
}

/* ---- requests ---------------------------------------------------------------- */

static int submit(struct aloop *L, struct aconn *a, int op, void *buf, size_t len)
{
    struct aiocb *cb = &a->op[op];
    cb->aio_buf = buf;
    cb->aio_nbytes = len;
    cb->aio_offset = 0;
    int r = op == OP_READ ? aio_read(cb) : aio_write(cb);
    if (r != 0)
        return -errno;
    a->busy |= 1u << op;
    L->inflight++;
    return 0;
}

static int issue_read(struct aloop *L, struct aconn *a)
{
    return submit(L, a, OP_READ, a->rbuf, READ_CHUNK);
}

static int issue_write(struct aloop *L, struct aconn *a)
{
    struct iovec v;
    if (iop__outq_iov(&a->c.out, &v, 1) != 1)
        return 0;
    return submit(L, a, OP_WRITE, v.iov_base, v.iov_len);
}

/* ---- the mechanism under the connection set ------------------------------------ */

static void free_conn(struct aloop *L, struct aconn *a)
{
    close(a->c.fd);
    close(a->wfd);
    slot_put(L, a);
    iop__conn_release(&a->c);
    free(a->rbuf);
    free(a);
    L->nconns--;
}

/* Free a closed connection once nothing of it is outstanding. */
static void maybe_free(struct aloop *L, struct aconn *a)
{
    if ((a->c.flags & IOP__CONN_GONE) && a->busy == 0)
        free_conn(L, a);
}

/* Closed: outstanding requests are made to end (shutdown wakes a helper
 * blocked in read or write; aio_cancel drops what has not started), and
 * the connection is freed when the last completion arrives. */
static void release(struct iop__connset *set, iop_conn *c)
{
    struct aconn *a = of(c);
    if (a->busy) {
        shutdown(c->fd, SHUT_RDWR);
        aio_cancel(c->fd, NULL);
        aio_cancel(a->wfd, NULL);
    }
    maybe_free(loop_of(set), a);
}

static int discard_input(struct iop__connset *set, iop_conn *c)
{
    struct aconn *a = of(c);
    return a->busy & (1u << OP_READ) ? 0 : issue_read(loop_of(set), a);
}

/* Issue what the connection's state calls for: the next write (or, with
 * nothing to write, the producer's next output, or the close), and the
 * next read unless paused. May free it. */
static void settle(struct iop__connset *set, iop_conn *c)
{
    struct aloop *L = loop_of(set);
    struct aconn *a = of(c);
    if ((c->flags & (IOP__CONN_GONE | IOP__CONN_LINGER)) || iop__connset_overflowed(set, c))
        return;
    if (!(a->busy & (1u << OP_WRITE))) {
        iop__connset_produce(set, c);
        if (c->out.bytes == 0 && iop__connset_done(set, c)) {
            iop__connset_finish(set, c);
            return;
        }
        /* What is queued, or the last words (TLS close_notify) that
         * done() has just queued: nothing else would write those. */
        if (c->out.bytes > 0) {
            int r = issue_write(L, a);
            if (r != 0) {
                iop__connset_close(set, c, r);
                return;
            }
        }
    }
    iop__connset_watermarks(set, c);
    if (!(a->busy & (1u << OP_READ)) && iop__connset_wants_input(set, c)) {
        int r = issue_read(L, a);
        if (r != 0)
            iop__connset_close(set, c, r);
    }
}

static const struct iop__connset_ops aio_ops = {
    .release = release,
    .settle = settle,
    .discard_input = discard_input,
    /* no timer: the loop's poll() waits no longer than the next deadline */
};

/* ---- completions ------------------------------------------------------------- */

static void on_read(struct aloop *L, struct aconn *a, ssize_t n)
{
    iop_conn *c = &a->c;
    if (c->flags & IOP__CONN_GONE) {
        maybe_free(L, a);
        return;
    }
    if (c->flags & IOP__CONN_LINGER) {
        if (n <= 0 || issue_read(L, a) != 0)
            iop__connset_close(&L->set, c, 0); /* the peer closed (or failed): done */
        return;
    }
    int r = 0;
    if (n < 0)
        r = (int)n;
    else if (n == 0) /* the peer's end of stream, or our SHUT_RD at stop */
        iop__connset_peer_eof(&L->set, c);
    else
        r = iop__connset_input(&L->set, c, a->rbuf, (size_t)n);
    if (r != 0) {
        iop__connset_close(&L->set, c, r);
        return;
    }
    settle(&L->set, c);
}

static void on_write(struct aloop *L, struct aconn *a, ssize_t n)
{
    if (a->c.flags & IOP__CONN_GONE) {
        maybe_free(L, a);
        return;
    }
    if (n <= 0) {
        iop__connset_close(&L->set, &a->c, n < 0 ? (int)n : -EIO);
        return;
    }
    iop__outq_consume(&a->c.out, (size_t)n); /* a short write: the rest goes next */
    iop__connset_sent(&L->set, &a->c);
    settle(&L->set, &a->c);
}

/* Take the completion of request `value` (slot * 2 + op) if it is one. */
static void complete(struct aloop *L, unsigned value)
{
    unsigned slot = value >> 1, op = value & 1;
    if (slot >= L->nslots || !L->slot[slot])
        return;
    struct aconn *a = L->slot[slot];
    if (!(a->busy & (1u << op)))
        return; /* stale: already taken */
    int e = aio_error(&a->op[op]);
    if (e == EINPROGRESS)
        return; /* stale: that slot's request of now is still running */
    ssize_t n = aio_return(&a->op[op]);
    a->busy &= ~(1u << op);
    L->inflight--;
    if (n < 0)
        n = -(e > 0 ? e : EIO);
    if (op == OP_READ)
        on_read(L, a, n);
    else
        on_write(L, a, n);
}

static void read_signals(struct aloop *L)
{
    struct signalfd_siginfo si[SIGINFO_BATCH];
    for (;;) {
        ssize_t n = read(L->sfd, si, sizeof si);
        if (n <= 0)
            return;
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++)
            complete(L, (unsigned)si[i].ssi_int);
        if ((size_t)n < sizeof si)
            return;
    }
}

/* Look at every outstanding request: the net for lost notifications. */
static void scan(struct aloop *L)
{
    static const struct timespec zero = {0, 0};
    for (size_t i = 0; i < L->nslots && L->inflight > 0; i++) {
        for (unsigned op = 0; op < 2; op++) {
            struct aconn *a = L->slot[i];
            if (!a || !(a->busy & (1u << op)) || aio_error(&a->op[op]) == EINPROGRESS)
                continue;
            /* aio_suspend() takes glibc's request lock, which the helper
             * holds until it has notified: past it, the aiocb is ours. */
            const struct aiocb *l[1] = {&a->op[op]};
            if (aio_suspend(l, 1, &zero) == 0)
                complete(L, (unsigned)i * 2 + op);
        }
    }
}

/* ---- accepting ------------------------------------------------------------------ */

static void take(struct aloop *L, int fd, const struct sockaddr_storage *peer,
                 socklen_t peerlen)
{
    iop_server *s = L->s;
    if (!iop__acceptor_take(&L->acc, fd, (unsigned)L->nconns))
        return; /* refused (and closed) */
    struct aconn *a = calloc(1, sizeof *a);
    char *rbuf = malloc(READ_CHUNK);
    int wfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (wfd < 0 && (errno == EMFILE || errno == ENFILE) && L->spare >= 0) {
        /* The accepted descriptor was the last one free: its twin takes
         * the reserved number, so the client is served, not dropped;
         * accept_some() accepts no more until the reserve is back. */
        wfd = dup3(fd, L->spare, O_CLOEXEC);
        if (wfd >= 0)
            L->spare = -1;
    }
    int r = !a || !rbuf ? -ENOMEM : wfd < 0 ? -errno : slot_get(L, a);
    if (r != 0) {
        iop_report(s, IOP_LOG_ERROR, "cannot serve a connection: %s", iop_strerror(r));
        if (wfd >= 0)
            close(wfd);
        close(fd);
        free(rbuf);
        free(a);
        return;
    }
    a->rbuf = rbuf;
    a->wfd = wfd;
    for (int op = 0; op < 2; op++) {
        struct aiocb *cb = &a->op[op];
        cb->aio_fildes = op == OP_READ ? fd : wfd;
        cb->aio_sigevent.sigev_notify = SIGEV_SIGNAL;
        cb->aio_sigevent.sigev_signo = AIO_SIGNAL;
        cb->aio_sigevent.sigev_value.sival_int = (int)(a->slot * 2 + (unsigned)op);
    }
    L->nconns++;
    L->accepted = 1;
    L->set.now = iop__now_ms();
    iop__connset_open(&L->set, &a->c, fd, peer, peerlen);
    settle(&L->set, &a->c);
}

/* EMFILE and the like: the client stays in the backlog and the listener
 * readable; leave it out of the poll for a while (net/acceptor.h says it,
 * once per episode). 1 if paused. */
static int pause_accepting(struct aloop *L, int err)
{
    int ms = iop__acceptor_failed(&L->acc, err);
    if (ms > 0)
        L->accept_resume = iop__now_ms() + (uint64_t)ms;
    return ms > 0;
}

static void accept_some(struct aloop *L)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (L->s->cfg.once && L->accepted)
            return;
        /* A connection needs two descriptors (fd and wfd): accept only
         * with one in reserve, else the second could fail after the
         * client was taken from the backlog. */
        if (L->spare < 0 && (L->spare = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
            pause_accepting(L, -errno);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t peerlen;
        int fd = iop__acceptor_accept(&L->acc, &peer, &peerlen, 0); /* a blocking socket */
        if (fd == -EAGAIN) { /* caught up: no client waits */
            iop__acceptor_caught_up(&L->acc);
            return;
        }
        if (fd < 0) {
            if (pause_accepting(L, fd))
                return;
            continue; /* a client that gave up */
        }
        take(L, fd, &peer, peerlen);
    }
}

/* ---- stopping ------------------------------------------------------------------- */

static void begin_stop(struct aloop *L)
{
    L->set.stopping = 1;
    L->set.now = iop__now_ms();
    L->drain_end = L->set.now + (uint64_t)L->set.pol->drain_ms;
    for (iop_conn *c = L->set.active.head, *next; c; c = next) {
        next = c->next;
        /* The outstanding read returns what has arrived, then end of stream. */
        shutdown(c->fd, SHUT_RD);
        if (!(of(c)->busy & (1u << OP_READ)) &&
            !(c->flags & (IOP__CONN_CLOSING | IOP__CONN_PEER_EOF)))
            iop__connset_stop_conn(&L->set, c); /* paused: nothing more will be read */
    }
}

static void drain_expired(struct aloop *L)
{
    L->drained = 1;
    iop__connset_drain_expired(&L->set);
}

/* ---- the loop --------------------------------------------------------------------- */

static int timeout_until(uint64_t now, uint64_t when, int t)
{
    int ms = when > now ? (int)(when - now > 600000 ? 600000 : when - now) : 0;
    return t < 0 || ms < t ? ms : t;
}

static int loop(struct aloop *L)
{
    iop_server *s = L->s;
    struct iop__connset *set = &L->set;
    L->next_scan = iop__now_ms() + SCAN_MS;
    for (;;) {
        uint64_t now = iop__now_ms();
        if (set->stopping && L->nconns == 0)
            return 0;
        if (s->cfg.once && L->accepted && L->nconns == 0)
            return 0;
        if (L->drained && now >= L->drain_end + TEARDOWN_MS)
            return 0; /* leaks what is left; see teardown() */
        int timeout = -1;
        if (L->inflight > 0)
            timeout = timeout_until(now, L->next_scan, timeout);
        uint64_t due = iop__connset_next_deadline(set); /* idle and lingering */
        if (due != UINT64_MAX)
            timeout = timeout_until(now, due, timeout);
        if (set->stopping)
            timeout = timeout_until(now, L->drain_end + (L->drained ? TEARDOWN_MS : 0),
                                    timeout);
        /* Beyond the limit, new connections are accepted and closed. */
        int listening = !set->stopping && !(s->cfg.once && L->accepted);
        if (listening && now < L->accept_resume) {
            timeout = timeout_until(now, L->accept_resume, timeout);
            listening = 0;
        }
        struct pollfd p[5] = {
            {.fd = L->sfd, .events = POLLIN},
            {.fd = L->hint[0], .events = POLLIN},
            {.fd = iop__connset_mailbox_fd(set), .events = POLLIN},
            {.fd = set->stopping ? -1 : s->stop_pipe[0], .events = POLLIN},
            {.fd = listening ? s->listen_fd : -1, .events = POLLIN},
        };
        if (poll(p, 5, timeout) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        now = set->now = iop__now_ms();
        if (p[0].revents)
            read_signals(L);
        if (p[1].revents || now >= L->next_scan) {
            char drain[64];
            while (read(L->hint[0], drain, sizeof drain) > 0)
                ;
            scan(L);
            L->next_scan = now + SCAN_MS;
        }
        if (p[2].revents)
            iop__mailbox_drain(set->mbox);
        if (p[3].revents)
            begin_stop(L);
        if (p[4].revents)
            accept_some(L);
        if (now >= iop__connset_next_deadline(set))
            iop__connset_sweep(set);
        if (set->stopping && !L->drained && now >= L->drain_end)
            drain_expired(L);
        iop__connset_run_kicked(set);
    }
}

/* ---- set-up and tear-down ------------------------------------------------------------ */

static int run_aio(iop_server *s)
{
    struct aloop L = {.s = s, .sfd = -1, .spare = -1, .hint = {-1, -1}};
    L.cap = s->max_conns; /* at most AIO_CONNS_MAX: iop_server_open() saw to it */
    iop__acceptor_init(&L.acc, s, s->listen_fd);

    /* Two helper threads per connection at most: its read and its write. */
    struct aioinit ai;
    memset(&ai, 0, sizeof ai);
    ai.aio_threads = (int)L.cap * 2 + 2;
    ai.aio_num = 64;
    ai.aio_idle_time = 1;
    aio_init(&ai);

    int r = iop__set_nonblocking(s->listen_fd);
    if (r != 0)
        return r;
    if (pipe2(L.hint, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    r = iop__connset_init(&L.set, s, &aio_ops, &L); /* with its mailbox: iop_post */
    if (r != 0)
        goto out_set;
    sigset_t set, oldmask;
    sigemptyset(&set);
    sigaddset(&set, AIO_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, &oldmask);
    L.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (L.sfd < 0) {
        r = -errno;
        pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
        goto out_set;
    }
    atomic_store(&hint_fd, L.hint[1]);
    struct sigaction sa, oldact;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_stray;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(AIO_SIGNAL, &sa, &oldact);

    r = loop(&L);

    /* Close what is left (an error ended the loop), and give outstanding
     * requests a bounded time to finish. */
    if (L.nconns > 0 && !L.drained) {
        L.set.stopping = L.drained = 1;
        L.drain_end = iop__now_ms();
        drain_expired(&L);
    }
    uint64_t end = iop__now_ms() + TEARDOWN_MS;
    while (L.nconns > 0 && iop__now_ms() < end) {
        struct pollfd p = {.fd = L.sfd, .events = POLLIN};
        poll(&p, 1, 50);
        read_signals(&L);
        scan(&L);
    }
    /* Every notification of a finished request has been queued once
     * glibc's request lock is free (aio_cancel takes it): take them all. */
    aio_cancel(L.sfd, NULL);
    read_signals(&L);
    if (L.nconns > 0) {
        /* Never free what a helper may still write into. */
        iop_report(s, IOP_LOG_ERROR, "%zu connections' asynchronous I/O did not "
                   "finish; leaving their memory allocated", L.nconns);
        struct sigaction ign;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        sigaction(AIO_SIGNAL, &ign, NULL);
    } else {
        sigaction(AIO_SIGNAL, &oldact, NULL);
    }
    atomic_store(&hint_fd, -1);
    close(L.sfd);
    pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
out_set:
    if (L.set.s)
        iop__connset_free(&L.set);
    if (L.spare >= 0)
        close(L.spare);
    close(L.hint[0]);
    close(L.hint[1]);
    if (L.nconns == 0) {
        free(L.slot);
        free(L.free_slots);
    }
    return r;
}

const struct iop__model iop__model_aio = {
    .info = {
        .name = "aio",
        .summary = "one thread, POSIX aio_read/aio_write (glibc: helper threads)",
        .datagram = 0,
        .shared_state = 1,
    },
    .conn_fds = 2, /* fd and wfd */
    .max_conns_ceiling = AIO_CONNS_MAX,
    .run = run_aio,
};
