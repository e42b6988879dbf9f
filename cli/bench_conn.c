/*
 * What moves on one open bench connection, per mode:
 *
 *   messages over a stream (pingpong, rate): framed messages written back
 *     to back; the echo is checked byte by byte against a regenerated copy
 *     and a message is answered when all its bytes are back. Echo servers
 *     may split and merge as they like: only the byte count matters.
 *   datagrams (pingpong, rate over UDP): one datagram per message, matched
 *     to its answer by the sequence number it carries; unanswered ones
 *     time out, late answers are counted apart.
 *   stream: an endless pattern written as fast as the socket takes it;
 *     whatever comes back is checked as an echo of it.
 *   connect: "N\n", then exactly N bytes, then close (Stevens' client).
 *
 * The layer under bench_worker.c: it moves bytes and counts messages, and
 * answers every call with what the loop is to do next (a struct bstep); it
 * never closes, connects or schedules. Every mode writes through
 * write_out(), the one send / EAGAIN / arm-output loop; a mode only says
 * which bytes come next (struct mode_ops).
 */
#define _GNU_SOURCE
#include "bench_conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

static const struct bstep KEEP = {B_KEEP, 0, 0};

static struct bstep failed(enum bench_err kind, int err)
{
    return (struct bstep){B_FAIL, (uint8_t)kind, err};
}

static inline size_t min_sz(uint64_t a, uint64_t b)
{
    return (size_t)(a < b ? a : b);
}

/* A failed read or write: which error it was. */
static struct bstep io_failed(int err)
{
    enum bench_err kind = ERR_OTHER;
    if (err == ECONNRESET || err == EPIPE || err == ECONNABORTED)
        kind = ERR_RESET;
    else if (err == ECONNREFUSED) /* a datagram's ICMP "port unreachable" */
        kind = ERR_REFUSED;
    else if (err == ETIMEDOUT)
        kind = ERR_TIMEOUT;
    else if (err == EPROTO) /* --tls: OpenSSL's failure, its reason kept */
        kind = ERR_TLS;
    return failed(kind, err);
}

/* ---- counting what every mode shares ------------------------------------- */

static void add_sent(struct wctx *w, size_t n)
{
    w->bw->c.all_sent += n;
    if (w->measuring)
        w->bw->c.bytes_sent += n;
}

static void add_recv(struct wctx *w, size_t n)
{
    w->bw->c.all_recv += n;
    if (w->measuring)
        w->bw->c.bytes_recv += n;
}

/* May a new message be issued now, and is it measured? intended: the time
 * it counts from. Claims a -n ticket when measured. 1 yes, 0 no. */
static int claim(struct wctx *w, int64_t intended, uint8_t *measured)
{
    const struct bench_cfg *cfg = w->cfg;
    *measured = 0;
    if (w->exhausted)
        return 0;
    /* Rate mode still sends what was due before the end, however late:
     * dropping it would hide a stall at the end of the run. */
    if (w->ending && cfg->mode != MODE_RATE)
        return 0;
    if (intended >= w->sh->t_measure) {
        if (intended >= w->sh->t_end)
            return 0;
        if (cfg->count) {
            if (atomic_fetch_add(&w->sh->tickets, 1) >= cfg->count) {
                w->exhausted = 1;
                w->ending = 1;
                return 0;
            }
        }
        *measured = 1;
    }
    return 1;
}

void conn_resolve(struct wctx *w, struct bconn *c, struct bslot *s, int ok,
                  int64_t when)
{
    if (ok) {
        c->fails = 0;
        w->bw->c.all_answered++;
    }
    if (!s->measured)
        return;
    s->measured = 0;
    w->measured_inflight--;
    if (w->cfg->count)
        w->resolved_pending++;
    if (!ok) {
        w->bw->c.failed++;
        return;
    }
    w->bw->c.messages++;
    uint64_t lat = when > s->t_issue ? (uint64_t)(when - s->t_issue) : 0;
    iop__hist_record(&w->bw->hist, lat);
    if (w->bw->live)
        iop__hist_record(&w->bw->ihist, lat);
}

/* A new message in flight, last in the ring, not yet written. */
static struct bslot *push_slot(struct wctx *w, struct bconn *c, int64_t intended,
                               uint8_t measured)
{
    struct bslot *s = slot_at(c, c->count);
    s->seq = c->next_seq++;
    uint64_t key = bench_msg_key(c->id, s->seq);
    s->size = bench_msg_size(w->cfg, key);
    s->framed = w->cfg->stream && w->cfg->mode != MODE_CONNECT
                    ? bench_framed_len(w->cfg, s->size) : s->size;
    s->t_issue = intended;
    s->t_sent = w->now;
    s->measured = measured;
    s->done = 0;
    c->count++;
    c->unsent++;
    if (measured) {
        w->measured_inflight++;
        if (w->cfg->mode == MODE_RATE)
            w->issued_measured++;
    }
    return s;
}

/* ---- the one write loop ---------------------------------------------------- */

void conn_arm_out(struct wctx *w, struct bconn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->out_armed = (uint8_t)on;
}

/* How a mode moves its bytes. */
struct mode_ops {
    /* Read what came (EPOLLIN, HUP or ERR). */
    struct bstep (*read)(struct wctx *w, struct bconn *c);
    /* The next bytes to write: *p and their length; 0 when nothing is
     * left (no message is empty: -s is at least 1). */
    size_t (*next)(struct wctx *w, struct bconn *c, const uint8_t **p);
    /* n of them went out. */
    void (*wrote)(struct wctx *w, struct bconn *c, size_t n);
    /* At most this many sends per call, then the other connections have
     * a turn; 0: until nothing is left or the socket is full. */
    unsigned turns;
};

/* Write what the mode has to write. When it is all out, stop watching for
 * room; when the socket is full (EAGAIN, a short write) or the turn is
 * over, watch for room and let epoll say when to go on. */
static inline struct bstep write_out(struct wctx *w, struct bconn *c,
                                     const struct mode_ops *m)
{
    for (unsigned turn = 0; m->turns == 0 || turn < m->turns; turn++) {
        const uint8_t *p;
        size_t len = m->next(w, c, &p);
        if (len == 0) {
            if (c->out_armed)
                conn_arm_out(w, c, 0);
            return KEEP;
        }
        ssize_t r = bconn_send(w, c, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* ENOBUFS: a datagram socket's queue is full, as good as EAGAIN */
            if (errno == EAGAIN || (errno == ENOBUFS && !w->cfg->stream))
                break;
            return io_failed(errno);
        }
        add_sent(w, (size_t)r);
        m->wrote(w, c, (size_t)r);
        if ((size_t)r < len)
            break;
    }
    if (!c->out_armed)
        conn_arm_out(w, c, 1);
    return KEEP;
}

/* ---- messages over a stream ---------------------------------------------- */

/* The messages not yet (fully) written, as many as fit in one send(). */
static inline size_t msg_next(struct wctx *w, struct bconn *c, const uint8_t **p)
{
    if (c->unsent == 0)
        return 0;
    size_t len = 0;
    uint32_t i = c->count - c->unsent;
    uint64_t off = c->tx_off;
    while (len < w->bufsz && i < c->count) {
        struct bslot *s = slot_at(c, i);
        size_t n = min_sz(s->framed - off, w->bufsz - len);
        bench_frame_bytes(w->cfg, bench_msg_key(c->id, s->seq), s->size, off,
                          w->txbuf + len, n);
        len += n;
        off += n;
        if (off == s->framed) {
            i++;
            off = 0;
        }
    }
    *p = w->txbuf;
    return len;
}

static inline void msg_wrote(struct wctx *w, struct bconn *c, size_t n)
{
    (void)w;
    while (n > 0) {
        struct bslot *s = slot_at(c, c->count - c->unsent);
        uint64_t left = s->framed - c->tx_off;
        if (n >= left) {
            n -= left;
            c->tx_off = 0;
            c->unsent--;
        } else {
            c->tx_off += n;
            n = 0;
        }
    }
}

/* Check what came back against what was sent, message by message. */
static struct bstep msg_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = bconn_recv(w, c, w->rxbuf, w->bufsz);
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? KEEP : io_failed(errno);
    w->now = bench_now_ns();
    /* The server closed: mid-answer that is a short read; idle, the
     * connection is simply made again. */
    if (r == 0)
        return failed(c->count > 0 ? ERR_SHORT : ERR_KINDS, 0);
    add_recv(w, (size_t)r);
    const uint8_t *p = w->rxbuf;
    size_t left = (size_t)r;
    while (left > 0) {
        if (c->count == 0) /* bytes nobody asked for */
            return failed(ERR_MISMATCH, 0);
        struct bslot *s = slot_at(c, 0);
        /* An echo cannot be ahead of what was written. */
        uint64_t limit = c->unsent == c->count ? c->tx_off : s->framed;
        if (limit <= c->rx_off)
            return failed(ERR_MISMATCH, 0);
        size_t take = min_sz(limit - c->rx_off, left);
        bench_frame_bytes(w->cfg, bench_msg_key(c->id, s->seq), s->size, c->rx_off,
                          w->expbuf, take);
        if (memcmp(p, w->expbuf, take) != 0)
            return failed(ERR_MISMATCH, 0);
        c->rx_off += take;
        p += take;
        left -= take;
        if (c->rx_off == s->framed) {
            conn_resolve(w, c, s, 1, w->now);
            c->head = (c->head + 1) % c->cap;
            c->count--;
            c->rx_off = 0;
        }
    }
    return conn_pump(w, c);
}

static const struct mode_ops msg_ops = {msg_read, msg_next, msg_wrote, 0};

/* ---- datagrams ----------------------------------------------------------- */

/* The first datagram not yet sent. */
static inline size_t dgram_next(struct wctx *w, struct bconn *c, const uint8_t **p)
{
    if (c->unsent == 0)
        return 0;
    struct bslot *s = slot_at(c, c->count - c->unsent);
    bench_dgram_bytes(c->id, s->seq, s->size, w->txbuf);
    *p = w->txbuf;
    return s->size;
}

static inline void dgram_wrote(struct wctx *w, struct bconn *c, size_t n)
{
    (void)n; /* a datagram goes whole or not at all */
    slot_at(c, c->count - c->unsent)->t_sent = w->now;
    c->unsent--;
}

/* Answered or failed datagrams leave from the front, in order. */
static void dgram_pop_done(struct bconn *c)
{
    while (c->count > c->unsent && slot_at(c, 0)->done) {
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
}

static struct bstep dgram_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = recv(c->fd, w->rxbuf, w->bufsz, 0);
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? KEEP : io_failed(errno);
    w->now = bench_now_ns();
    add_recv(w, (size_t)r);
    uint32_t sent = c->count - c->unsent;
    struct bslot *s = NULL;
    int tagged = w->cfg->size_min >= 8 && r >= 8;
    uint64_t seq = 0;
    if (tagged) {
        for (int i = 7; i >= 0; i--)
            seq = seq << 8 | w->rxbuf[i];
        for (uint32_t i = 0; i < sent && !s; i++)
            if (!slot_at(c, i)->done && slot_at(c, i)->seq == seq)
                s = slot_at(c, i);
    } else {
        for (uint32_t i = 0; i < sent && !s; i++)
            if (!slot_at(c, i)->done)
                s = slot_at(c, i);
    }
    if (!s) {
        if (tagged && seq < c->next_seq)
            w->bw->c.late++; /* its message already timed out */
        else {
            w->bw->c.errors[ERR_MISMATCH]++;
            w->bw->c.last_errno[ERR_MISMATCH] = 0;
        }
        return KEEP;
    }
    bench_dgram_bytes(c->id, s->seq, s->size, w->expbuf);
    int ok = (size_t)r == s->size && memcmp(w->rxbuf, w->expbuf, s->size) == 0;
    if (!ok) {
        w->bw->c.errors[ERR_MISMATCH]++;
        w->bw->c.last_errno[ERR_MISMATCH] = 0;
    }
    conn_resolve(w, c, s, ok, w->now);
    s->done = 1;
    dgram_pop_done(c);
    return conn_pump(w, c);
}

static const struct mode_ops dgram_ops = {dgram_read, dgram_next, dgram_wrote, 0};

/* ---- the stream pattern (stream mode) ------------------------------------ */

/* A table of random bytes, read from an offset that depends on the
 * connection: writing and checking are memcpy and memcmp, fast enough
 * not to slow a bulk transfer down. Its period is a prime, so no write
 * size lines up with it. */
#define TABLE_PERIOD 1048573u
static uint8_t *table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    table = malloc(TABLE_PERIOD + BENCH_IO_BUF);
    if (table) {
        bench_pattern(UINT64_C(0x5EED), 0, table, TABLE_PERIOD);
        memcpy(table + TABLE_PERIOD, table, BENCH_IO_BUF);
    }
}

/* Bytes [off, off+n) of connection key's stream, n <= BENCH_IO_BUF. */
static const uint8_t *stream_bytes(uint64_t key, uint64_t off)
{
    return table + (key + off) % TABLE_PERIOD;
}

/* ---- stream mode ----------------------------------------------------------- */

/* The pattern from where the writing stands, -s bytes of it (at most
 * BENCH_IO_BUF, checked at the start): it never runs out. */
static size_t bulk_next(struct wctx *w, struct bconn *c, const uint8_t **p)
{
    *p = stream_bytes(c->s_key, c->s_tx);
    return w->cfg->size_max;
}

static void bulk_wrote(struct wctx *w, struct bconn *c, size_t n)
{
    c->s_tx += (uint64_t)n;
    c->t_progress = w->now;
}

static struct bstep bulk_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = bconn_recv(w, c, w->rxbuf, w->bufsz);
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? KEEP : io_failed(errno);
    /* Closed while its echo was still owed: a short read. A discard
     * server that hangs up is "other" (errno 0: closed by the peer). */
    if (r == 0)
        return failed(c->s_rx > 0 && c->s_rx < c->s_tx ? ERR_SHORT : ERR_OTHER, 0);
    if (c->s_rx + (uint64_t)r > c->s_tx ||
        memcmp(w->rxbuf, stream_bytes(c->s_key, c->s_rx), (size_t)r) != 0)
        return failed(ERR_MISMATCH, 0);
    c->s_rx += (uint64_t)r;
    c->t_progress = w->now;
    add_recv(w, (size_t)r);
    return KEEP;
}

/* A few writes, then let the other connections have a turn. The pattern
 * never runs out, so the output stays armed: as fast as it goes. */
static const struct mode_ops bulk_ops = {bulk_read, bulk_next, bulk_wrote, 4};

/* ---- connect mode ----------------------------------------------------------- */

int conn_begin_request(struct wctx *w, struct bconn *c)
{
    uint8_t measured;
    if (!claim(w, w->now, &measured))
        return 0;
    c->head = c->count = c->unsent = 0;
    c->tx_off = c->rx_off = 0;
    push_slot(w, c, w->now, measured);
    return 1;
}

/* What is left of the request "N\n". */
static size_t req_next(struct wctx *w, struct bconn *c, const uint8_t **p)
{
    if (!c->unsent)
        return 0;
    char *req = (char *)w->txbuf;
    int len = snprintf(req, 16, "%u\n", (unsigned)slot_at(c, 0)->size);
    if (c->tx_off >= (uint64_t)len) {
        c->unsent = 0;
        return 0;
    }
    *p = w->txbuf + c->tx_off;
    return (size_t)len - c->tx_off;
}

static void req_wrote(struct wctx *w, struct bconn *c, size_t n)
{
    (void)w;
    c->tx_off += (uint64_t)n;
}

static struct bstep req_read(struct wctx *w, struct bconn *c)
{
    struct bslot *s = slot_at(c, 0);
    /* Exactly the bytes asked for: never read into what may follow. */
    ssize_t r = bconn_recv(w, c, w->rxbuf, min_sz(s->size - c->rx_off, w->bufsz));
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? KEEP : io_failed(errno);
    w->now = bench_now_ns();
    if (r == 0)
        return failed(ERR_SHORT, 0);
    add_recv(w, (size_t)r);
    c->rx_off += (uint64_t)r;
    if (c->rx_off < s->size)
        return KEEP;
    conn_resolve(w, c, s, 1, w->now);
    c->count = 0;
    return (struct bstep){B_DONE, 0, 0};
}

static const struct mode_ops req_ops = {req_read, req_next, req_wrote, 0};

/* ---- what the loop calls ------------------------------------------------------ */

static const struct mode_ops *ops_of(const struct bench_cfg *cfg)
{
    if (cfg->mode == MODE_STREAM)
        return &bulk_ops;
    if (cfg->mode == MODE_CONNECT)
        return &req_ops;
    return cfg->stream ? &msg_ops : &dgram_ops;
}

struct bstep conn_opened(struct wctx *w, struct bconn *c)
{
    switch (w->cfg->mode) {
    case MODE_STREAM:
        pthread_once(&table_once, table_init);
        if (!table)
            return failed(ERR_OTHER, ENOMEM);
        c->s_key = bench_msg_key(c->id, c->next_seq++);
        c->s_tx = c->s_rx = 0;
        c->t_progress = w->now;
        return write_out(w, c, &bulk_ops);
    case MODE_CONNECT:
        slot_at(c, 0)->t_sent = w->now;
        return write_out(w, c, &req_ops);
    default:
        return conn_pump(w, c);
    }
}

struct bstep conn_event(struct wctx *w, struct bconn *c, uint32_t ev)
{
    const struct mode_ops *m = ops_of(w->cfg);
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        struct bstep st = m->read(w, c);
        /* --tls: what OpenSSL decrypted and holds, epoll cannot report
         * (a read that took part of a record, or a pipelined one). */
        while (st.next == B_KEEP && c->state == C_OPEN && btls_pending(c))
            st = m->read(w, c);
        /* Failed, or finished: the loop closes it before any write. */
        if (st.next != B_KEEP)
            return st;
    }
    if (!(ev & EPOLLOUT))
        return KEEP;
    return write_out(w, c, m);
}

struct bstep conn_pump(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    if (c->state != C_OPEN)
        return KEEP;
    uint8_t measured;
    if (cfg->mode == MODE_PINGPONG) {
        while (c->count < c->cap && claim(w, w->now, &measured))
            push_slot(w, c, w->now, measured);
    } else if (cfg->mode == MODE_RATE) {
        while (c->count < c->cap && c->next_k < c->due_k) {
            int64_t t = sched_time(w, c->next_k * w->n + c->local);
            if (!claim(w, t, &measured))
                break;
            c->next_k++;
            push_slot(w, c, t, measured);
        }
    } else {
        return KEEP;
    }
    /* The hot path: write_out() and the mode's steps (all inline) become
     * one loop per mode, no calls through the table. */
    return cfg->stream ? write_out(w, c, &msg_ops) : write_out(w, c, &dgram_ops);
}

struct bstep conn_sweep(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    int64_t limit = w->now - cfg->timeout_ns;
    if (cfg->mode == MODE_STREAM)
        return c->t_progress < limit ? failed(ERR_TIMEOUT, ETIMEDOUT) : KEEP;
    if (c->count == 0)
        return KEEP;
    if (cfg->stream) {
        /* The oldest message waited too long: the stream cannot be trusted
         * past it, so everything in flight times out with it (the one the
         * loop counts in failing the connection, and the rest). */
        if (slot_at(c, 0)->t_sent >= limit)
            return KEEP;
        w->bw->c.errors[ERR_TIMEOUT] += c->count - 1;
        return failed(ERR_TIMEOUT, ETIMEDOUT);
    }
    /* Datagrams: each one on its own; the connection carries on. */
    uint32_t sent = c->count - c->unsent;
    for (uint32_t i = 0; i < sent; i++) {
        struct bslot *s = slot_at(c, i);
        if (!s->done && s->t_sent < limit) {
            w->bw->c.errors[ERR_TIMEOUT]++;
            w->bw->c.last_errno[ERR_TIMEOUT] = ETIMEDOUT;
            conn_resolve(w, c, s, 0, w->now);
            s->done = 1;
        }
    }
    dgram_pop_done(c);
    return conn_pump(w, c);
}
