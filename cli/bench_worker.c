/*
 * One bench thread: its own epoll loop over its share of the connections.
 *
 * The loop owns the clock of the run (warm-up, measured window, end), the
 * connect / fail / reconnect cycle of every connection, the rate-mode
 * schedule and the sweep that times out what waited too long. What moves
 * on an open connection is bench_conn.c's business: the loop calls down
 * into it and takes the step it answers with (carry on, fail, or close
 * after a finished request); bench_conn.c never calls back up.
 *
 * Every wait is bounded: epoll waits at most until the next thing due and
 * never past the hard stop; nothing here blocks.
 */
#define _GNU_SOURCE
#include "bench_conn.h"
#include "../src/net/proxy_header.h"
#include "tls_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EVENTS_MAX 256
#define MAX_WAIT_NS (50 * 1000000LL) /* notice a stop within 50 ms */
#define LINGER_NS (1000 * 1000000LL)  /* at the end: the servers' FIN, at most this long */

static enum bench_err classify(int err)
{
    switch (err) {
    case ECONNREFUSED:
    case ENOENT:  /* no socket file at the Unix path */
    case EAGAIN:  /* a Unix listener's backlog is full */
        return ERR_REFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return ERR_RESET;
    case ETIMEDOUT:
        return ERR_TIMEOUT;
    case EMFILE:
    case ENFILE:
        return ERR_FDLIMIT;
    default:
        return ERR_OTHER;
    }
}

static void count_error(struct wctx *w, enum bench_err kind, int err, uint64_t n)
{
    if (kind >= ERR_KINDS || n == 0)
        return;
    w->bw->c.errors[kind] += n;
    w->bw->c.last_errno[kind] = err;
}

/* The first m due at or after t. */
static uint64_t sched_first_at(const struct wctx *w, int64_t t)
{
    double x = (double)(t - w->sh->t_start - w->offset_ns) / w->interval_ns;
    uint64_t m = x > 0 ? (uint64_t)x : 0;
    while (m > 0 && sched_time(w, m - 1) >= t)
        m--;
    while (sched_time(w, m) < t)
        m++;
    return m;
}

static void close_conn(struct wctx *w, struct bconn *c)
{
    btls_close(w, c, 0); /* if not done cleanly already */
    if (c->fd >= 0) {
        close(c->fd); /* leaves the epoll set with it */
        c->fd = -1;
    }
    if (c->state == C_OPEN)
        w->bw->c.open_now--;
    c->head = c->count = c->unsent = 0;
    c->tx_off = c->rx_off = 0;
    c->out_armed = 0;
}

/* Does this connection still have work once the run is ending? */
static int has_work(const struct wctx *w, const struct bconn *c)
{
    if (!w->ending)
        return 1;
    return w->cfg->mode == MODE_RATE && !w->exhausted && c->next_k < c->due_k;
}

static void start_connect(struct wctx *w, struct bconn *c);

/* Wait before connecting again: none after a first failure, then growing
 * to a second, so a dead server is not hammered. */
static void schedule_retry(struct wctx *w, struct bconn *c)
{
    c->state = C_IDLE;
    if (!has_work(w, c)) {
        c->state = C_FINISHED;
        return;
    }
    int64_t delay = 0;
    if (c->fails > 1) {
        unsigned shift = c->fails - 2 < 10 ? c->fails - 2 : 10;
        delay = (1000000LL << shift);
        if (delay > 1000000000LL)
            delay = 1000000000LL;
    }
    if (delay == 0) {
        start_connect(w, c);
        return;
    }
    c->t_state = w->now + delay;
    if (c->t_state < w->next_retry)
        w->next_retry = c->t_state;
}

/* Count an error of `kind` (err: errno or 0), fail every message in
 * flight, close, and schedule a new connection. */
static void fail(struct wctx *w, struct bconn *c, enum bench_err kind, int err)
{
    count_error(w, kind, err, 1);
    if (kind == ERR_KINDS)
        w->bw->c.idle_closes++;
    for (uint32_t i = 0; i < c->count; i++)
        conn_resolve(w, c, slot_at(c, i), 0, w->now);
    close_conn(w, c);
    c->fails++;
    schedule_retry(w, c);
}

/* Close after a finished request (connect mode) and start the next. */
static void recycle(struct wctx *w, struct bconn *c)
{
    btls_close(w, c, 1);
    close_conn(w, c);
    c->state = C_IDLE;
    if (has_work(w, c))
        start_connect(w, c);
    else
        c->state = C_FINISHED;
}

/* Take the step bench_conn.c answered with. */
static void act(struct wctx *w, struct bconn *c, struct bstep st)
{
    if (st.next == B_FAIL)
        fail(w, c, (enum bench_err)st.kind, st.err);
    else if (st.next == B_DONE)
        recycle(w, c);
}

/* --send-proxy-v2: first on the connection, the header a balancer sends,
 * naming the connection's own ends. At most 52 bytes into an empty send
 * buffer: one send() takes them. 0 or an errno. */
static int send_proxy_header(int fd)
{
    char hdr[64];
    ssize_t n = iop__proxy_write_for(fd, 2, hdr, sizeof hdr);
    if (n < 0)
        return (int)-n;
    ssize_t s = send(fd, hdr, (size_t)n, MSG_NOSIGNAL);
    return s == n ? 0 : s < 0 ? errno : EIO;
}

/* Connected (and with --tls, through the handshake): the traffic starts. */
static void ready(struct wctx *w, struct bconn *c)
{
    c->state = C_OPEN;
    w->bw->c.open_now++;
    act(w, c, conn_opened(w, c));
}

/* --tls: a step of the handshake, on each event until it is done. */
static void handshake(struct wctx *w, struct bconn *c)
{
    int err;
    int r = btls_handshake(w, c, &err);
    if (r == 1)
        ready(w, c);
    else if (r < 0)
        fail(w, c, err ? classify(err) : ERR_TLS, err);
}

/* Connected: the PROXY header first (before any TLS handshake, as a
 * balancer sends it), then the handshake or the traffic. */
static void opened(struct wctx *w, struct bconn *c)
{
    w->bw->c.connects++;
    int e = w->cfg->send_proxy ? send_proxy_header(c->fd) : 0;
    if (e != 0) {
        fail(w, c, classify(e), e);
        return;
    }
    if (!w->cfg->tls_ctx) {
        ready(w, c);
        return;
    }
    if (btls_start(w, c) != 0) {
        fail(w, c, ERR_TLS, 0);
        return;
    }
    c->state = C_HANDSHAKE;
    handshake(w, c);
}

/* The source address for connection `id` when spreading over 127.0.0.x:
 * one loopback address has one ephemeral port range. */
static int bind_source(const struct bench_cfg *cfg, int fd, uint32_t id)
{
    int one = 1;
    /* Pick the port at connect(), when the destination is known, so the
     * same port can serve other destinations. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7F000002u + id % cfg->n_sources);
    return bind(fd, (struct sockaddr *)&src, sizeof src) == 0 ? 0 : -errno;
}

static void start_connect(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    if (cfg->mode == MODE_CONNECT && !conn_begin_request(w, c)) {
        c->state = C_FINISHED;
        return;
    }
    int type = cfg->stream ? SOCK_STREAM : SOCK_DGRAM;
    int fd = socket(cfg->peer.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        c->state = C_IDLE;
        fail(w, c, classify(e), e);
        return;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->t_state = w->now;
    int r = 0;
    if (cfg->peer.ss_family == AF_UNIX && !cfg->stream) {
        /* A Unix datagram client needs a name for the answers: autobind. */
        sa_family_t fam = AF_UNIX;
        r = bind(fd, (struct sockaddr *)&fam, sizeof fam) == 0 ? 0 : -errno;
    } else if (cfg->stream && cfg->peer.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (cfg->n_sources)
            r = bind_source(cfg, fd, c->id);
    }
    if (r == 0 && connect(fd, (const struct sockaddr *)&cfg->peer, cfg->peerlen) != 0)
        r = -errno;
    int pending = r == -EINPROGRESS;
    if (r != 0 && !pending) {
        fail(w, c, classify(-r), -r);
        return;
    }
    struct epoll_event ev = {.events = pending ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        fail(w, c, classify(e), e);
        return;
    }
    c->out_armed = (uint8_t)pending;
    if (!pending)
        opened(w, c);
}

static void finish_connect(struct wctx *w, struct bconn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err != 0) {
        fail(w, c, classify(err), err);
        return;
    }
    conn_arm_out(w, c, 0);
    opened(w, c);
}

/* Rate mode: hand every message now due to its connection. */
static void rate_tick(struct wctx *w)
{
    if (w->m_next < w->m_end && sched_time(w, w->m_next) <= w->now) {
        /* Far behind (a rate beyond what the server or this thread can
         * do): every connection has messages due, so set each one's count
         * at once instead of walking message by message. */
        uint64_t m_due = sched_first_at(w, w->now + 1);
        if (m_due > w->m_end)
            m_due = w->m_end;
        if (m_due - w->m_next > w->n) {
            for (uint32_t i = 0; i < w->n; i++) {
                struct bconn *c = &w->conns[i];
                c->due_k = (m_due + w->n - 1 - i) / w->n; /* its m < m_due */
                if (c->state == C_OPEN)
                    act(w, c, conn_pump(w, c));
            }
            w->m_next = m_due;
            return;
        }
    }
    while (w->m_next < w->m_end && sched_time(w, w->m_next) <= w->now) {
        struct bconn *c = &w->conns[w->m_next % w->n];
        c->due_k = w->m_next / w->n + 1;
        w->m_next++;
        if (c->state == C_OPEN)
            act(w, c, conn_pump(w, c));
        else if (c->state == C_FINISHED && !w->exhausted) {
            c->state = C_IDLE; /* it has messages again */
            c->t_state = w->now;
            w->next_retry = w->now;
        }
    }
}

/* Connect what is due, time out what waited too long. */
static void sweep(struct wctx *w)
{
    w->next_retry = INT64_MAX;
    for (uint32_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        w->now = bench_now_ns();
        switch (c->state) {
        case C_IDLE:
            if (c->t_state <= w->now)
                start_connect(w, c);
            else if (c->t_state < w->next_retry)
                w->next_retry = c->t_state;
            break;
        case C_CONNECTING:
        case C_HANDSHAKE: /* --timeout bounds the connect and handshake together */
            if (w->now - c->t_state > w->cfg->timeout_ns)
                fail(w, c, ERR_TIMEOUT, ETIMEDOUT);
            break;
        case C_OPEN:
            act(w, c, conn_sweep(w, c));
            break;
        }
    }
}

/* The run is over and some measured messages never got an answer, not
 * even a timeout: count them as timed out. */
static void expire_all(struct wctx *w)
{
    for (uint32_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        for (uint32_t j = 0; j < c->count; j++) {
            struct bslot *s = slot_at(c, j);
            if (s->measured) {
                count_error(w, ERR_TIMEOUT, ETIMEDOUT, 1);
                conn_resolve(w, c, s, 0, w->now);
            }
        }
    }
    if (w->cfg->mode == MODE_RATE && !w->exhausted) {
        uint64_t want = w->m_end - w->m_measure_lo;
        if (w->issued_measured < want) {
            uint64_t n = want - w->issued_measured;
            count_error(w, ERR_TIMEOUT, ETIMEDOUT, n);
            w->bw->c.failed += n;
            w->bw->c.never_sent += n;
        }
    }
}

/* Draining after the end: nothing measured left in flight or unsent. */
static int drained(const struct wctx *w)
{
    if (w->measured_inflight > 0)
        return 0;
    if (w->cfg->mode == MODE_RATE && !w->exhausted)
        return w->issued_measured >= w->m_end - w->m_measure_lo;
    return 1;
}

/* Add this thread's resolved -n messages to the shared count; note the
 * moment the last one resolved. 1 when all n are. */
static int flush_resolved(struct wctx *w)
{
    uint64_t n = w->cfg->count;
    if (!n)
        return 0;
    if (w->resolved_pending) {
        uint64_t total = atomic_fetch_add(&w->sh->resolved, w->resolved_pending) +
                         w->resolved_pending;
        w->resolved_pending = 0;
        if (total >= n) {
            int_fast64_t zero = 0;
            atomic_compare_exchange_strong(&w->sh->t_done, &zero, (int_fast64_t)w->now);
        }
    }
    return atomic_load(&w->sh->t_done) != 0;
}

static int wait_events(struct wctx *w, struct epoll_event *evs, int64_t until)
{
    int64_t ns = until - bench_now_ns();
    if (ns < 0)
        ns = 0;
    if (ns > MAX_WAIT_NS)
        ns = MAX_WAIT_NS;
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    int n = epoll_pwait2(w->ep, evs, EVENTS_MAX, &ts, NULL);
    if (n < 0 && errno == ENOSYS) /* kernels before 5.11: millisecond waits */
        n = epoll_wait(w->ep, evs, EVENTS_MAX, (int)((ns + 999999) / 1000000));
    return n < 0 ? 0 : n;
}

static int setup(struct wctx *w, struct bench_worker *bw)
{
    const struct bench_cfg *cfg = bw->sh->cfg;
    memset(w, 0, sizeof *w);
    w->bw = bw;
    w->cfg = cfg;
    w->sh = bw->sh;
    w->ep = -1;
    /* Connections index, index + threads, ...: an even share. */
    w->n = cfg->conns / cfg->threads + (bw->index < cfg->conns % cfg->threads);
    uint32_t cap = cfg->mode == MODE_PINGPONG || cfg->mode == MODE_RATE ? cfg->pipeline : 1;
    w->bufsz = BENCH_IO_BUF;
    w->conns = calloc(w->n, sizeof *w->conns);
    struct bslot *slots = calloc((size_t)w->n * cap, sizeof *slots);
    w->txbuf = malloc(w->bufsz);
    w->rxbuf = malloc(w->bufsz);
    w->expbuf = malloc(w->bufsz);
    if (!w->conns || !slots || !w->txbuf || !w->rxbuf || !w->expbuf) {
        free(slots);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        c->fd = -1;
        c->id = bw->index + i * cfg->threads;
        c->local = i;
        c->ring = slots + (size_t)i * cap;
        c->cap = cap;
        c->state = C_IDLE;
    }
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        return -errno;
    if (cfg->mode == MODE_RATE) {
        /* This thread's share of the rate, its messages offset from the
         * other threads' so they do not all fire at once. */
        double rate = cfg->rate * w->n / cfg->conns;
        w->interval_ns = 1e9 / rate;
        w->offset_ns = (int64_t)(1e9 / cfg->rate * bw->index);
        w->m_end = sched_first_at(w, w->sh->t_end);
        w->m_measure_lo = sched_first_at(w, w->sh->t_measure);
    }
    return 0;
}

/* Read and drop what has arrived. 1 if nothing more will (end of stream
 * or an error), 0 if it is only empty for now. */
static int discard_input(struct wctx *w, int fd)
{
    for (;;) {
        ssize_t n = recv(fd, w->rxbuf, w->bufsz, 0);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

/*
 * The end of the run: close every connection as a client should, not with
 * a reset. close() with input unread sends RST, and answers still in
 * flight make the server log "connection reset" for what was only the
 * end of a benchmark. So our side is shut first (FIN), what the server
 * still sends is read and dropped until its own FIN, for at most
 * LINGER_NS, and then the socket closed: the lingering close of nginx and
 * of ioplex serve, from the client's side.
 */
static void close_all_cleanly(struct wctx *w)
{
    struct epoll_event evs[EVENTS_MAX];
    uint32_t left = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        struct bconn *c = &w->conns[i];
        if (c->fd < 0)
            continue;
        if (c->state == C_OPEN)
            btls_close(w, c, 1); /* --tls: close_notify before the FIN */
        if (!w->cfg->stream || c->state != C_OPEN || shutdown(c->fd, SHUT_WR) != 0 ||
            discard_input(w, c->fd)) {
            close_conn(w, c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        left++;
    }
    int64_t deadline = bench_now_ns() + LINGER_NS;
    while (left > 0 && bench_now_ns() < deadline) {
        if (w->bw->live)
            pthread_mutex_unlock(&w->bw->lock);
        int n = wait_events(w, evs, deadline);
        if (w->bw->live)
            pthread_mutex_lock(&w->bw->lock);
        for (int i = 0; i < n; i++) {
            struct bconn *c = evs[i].data.ptr;
            if (c->fd >= 0 && discard_input(w, c->fd)) {
                close_conn(w, c);
                left--;
            }
        }
    }
    /* Servers that keep their side open: what came is read, so the close
     * is a FIN still. */
    for (uint32_t i = 0; i < w->n; i++)
        if (w->conns[i].fd >= 0) {
            discard_input(w, w->conns[i].fd);
            close_conn(w, &w->conns[i]);
        }
}

static void teardown(struct wctx *w)
{
    for (uint32_t i = 0; w->conns && i < w->n; i++)
        close_conn(w, &w->conns[i]);
    if (w->ep >= 0)
        close(w->ep);
    if (w->conns)
        free(w->conns[0].ring);
    SSL_SESSION_free(w->session);
    free(w->conns);
    free(w->txbuf);
    free(w->rxbuf);
    free(w->expbuf);
}

static void run(struct wctx *w)
{
    const struct bench_cfg *cfg = w->cfg;
    struct bench_shared *sh = w->sh;
    struct epoll_event evs[EVENTS_MAX];
    int drain = cfg->mode == MODE_RATE || cfg->count > 0;
    int64_t sweep_ns = cfg->timeout_ns / 10;
    if (sweep_ns < 1000000)
        sweep_ns = 1000000;
    if (sweep_ns > 100000000)
        sweep_ns = 100000000;
    int64_t next_sweep = 0, drain_deadline = 0;

    w->now = bench_now_ns();
    w->measuring = w->now >= sh->t_measure && w->now < sh->t_end;
    w->next_retry = INT64_MAX;
    for (uint32_t i = 0; i < w->n; i++)
        start_connect(w, &w->conns[i]);

    for (;;) {
        w->now = bench_now_ns();
        if (atomic_load(&sh->stop) || w->now >= sh->t_hard)
            break;
        w->measuring = w->now >= sh->t_measure && w->now < sh->t_end;
        if (w->now >= sh->t_end)
            w->ending = 1;
        if (w->ending) {
            if (!drain)
                break;
            if (!drain_deadline)
                drain_deadline = w->now + cfg->timeout_ns + 2 * sweep_ns;
            if (drained(w))
                break;
            if (w->now >= drain_deadline) {
                expire_all(w);
                break;
            }
        }
        if (cfg->mode == MODE_RATE)
            rate_tick(w);
        if (w->now >= next_sweep || w->now >= w->next_retry) {
            sweep(w);
            next_sweep = w->now + sweep_ns;
        }
        if (flush_resolved(w))
            break;

        int64_t until = next_sweep;
        if (w->next_retry < until)
            until = w->next_retry;
        if (w->now < sh->t_measure && sh->t_measure < until)
            until = sh->t_measure;
        if (w->now < sh->t_end && sh->t_end < until)
            until = sh->t_end;
        if (drain_deadline && drain_deadline < until)
            until = drain_deadline;
        if (cfg->mode == MODE_RATE && w->m_next < w->m_end) {
            int64_t due = sched_time(w, w->m_next);
            if (due < until)
                until = due;
        }
        if (w->bw->live)
            pthread_mutex_unlock(&w->bw->lock);
        int n = wait_events(w, evs, until);
        if (w->bw->live)
            pthread_mutex_lock(&w->bw->lock);
        for (int i = 0; i < n; i++) {
            struct bconn *c = evs[i].data.ptr;
            w->now = bench_now_ns();
            w->measuring = w->now >= sh->t_measure && w->now < sh->t_end;
            if (c->state == C_CONNECTING)
                finish_connect(w, c);
            else if (c->state == C_HANDSHAKE)
                handshake(w, c);
            else if (c->state == C_OPEN)
                act(w, c, conn_event(w, c, evs[i].events));
        }
    }
    flush_resolved(w);
    /* A timed run just stops: what is still in flight is neither answered
     * nor failed, only reported. */
    w->bw->c.unfinished = w->measured_inflight;
}

void *bench_worker_main(void *arg)
{
    struct bench_worker *bw = arg;
    struct wctx w;
    /* Wake-ups to the microsecond: rate-mode sends are due at exact times
     * and every microsecond late is latency the server did not cause. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (bw->live)
        pthread_mutex_lock(&bw->lock);
    int r = setup(&w, bw);
    if (r == 0) {
        run(&w);
        close_all_cleanly(&w);
    } else
        bw->setup_error = r;
    teardown(&w);
    bw->t_finished = bench_now_ns();
    if (bw->live)
        pthread_mutex_unlock(&bw->lock);
    atomic_store(&bw->done, 1);
    return NULL;
}
