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

static inline size_t min_sz(uint64_t a, uint64_t b)
{
    return (size_t)(a < b ? a : b);
}

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

/* A failed read or write: which error it was. */
static void io_failed(struct wctx *w, struct bconn *c, int err)
{
    enum bench_err kind = ERR_OTHER;
    if (err == ECONNRESET || err == EPIPE || err == ECONNABORTED)
        kind = ERR_RESET;
    else if (err == ECONNREFUSED) /* a datagram's ICMP "port unreachable" */
        kind = ERR_REFUSED;
    else if (err == ETIMEDOUT)
        kind = ERR_TIMEOUT;
    worker_fail(w, c, kind, err);
}

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

/* ---- messages over a stream ---------------------------------------------- */

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

/* Write the messages not yet (fully) written, as many per send() as fit. */
static void msg_flush(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    while (c->unsent > 0) {
        size_t len = 0;
        uint32_t i = c->count - c->unsent;
        uint64_t off = c->tx_off;
        while (len < w->bufsz && i < c->count) {
            struct bslot *s = slot_at(c, i);
            size_t n = min_sz(s->framed - off, w->bufsz - len);
            bench_frame_bytes(cfg, bench_msg_key(c->id, s->seq), s->size, off,
                              w->txbuf + len, n);
            len += n;
            off += n;
            if (off == s->framed) {
                i++;
                off = 0;
            }
        }
        ssize_t r = send(c->fd, w->txbuf, len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->out_armed)
                    worker_arm_out(w, c, 1);
                return;
            }
            io_failed(w, c, errno);
            return;
        }
        add_sent(w, (size_t)r);
        for (size_t adv = (size_t)r; adv > 0;) {
            struct bslot *s = slot_at(c, c->count - c->unsent);
            uint64_t left = s->framed - c->tx_off;
            if (adv >= left) {
                adv -= left;
                c->tx_off = 0;
                c->unsent--;
            } else {
                c->tx_off += adv;
                adv = 0;
            }
        }
        if ((size_t)r < len) { /* the socket is full: wait for room */
            if (!c->out_armed)
                worker_arm_out(w, c, 1);
            return;
        }
    }
    if (c->out_armed)
        worker_arm_out(w, c, 0);
}

/* Check what came back against what was sent, message by message. */
static void msg_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = recv(c->fd, w->rxbuf, w->bufsz, 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            io_failed(w, c, errno);
        return;
    }
    w->now = bench_now_ns();
    if (r == 0) {
        /* The server closed: mid-answer that is a short read; idle, the
         * connection is simply made again. */
        worker_fail(w, c, c->count > 0 ? ERR_SHORT : ERR_KINDS, 0);
        return;
    }
    add_recv(w, (size_t)r);
    const uint8_t *p = w->rxbuf;
    size_t left = (size_t)r;
    while (left > 0) {
        if (c->count == 0) { /* bytes nobody asked for */
            worker_fail(w, c, ERR_MISMATCH, 0);
            return;
        }
        struct bslot *s = slot_at(c, 0);
        /* An echo cannot be ahead of what was written. */
        uint64_t limit = c->unsent == c->count ? c->tx_off : s->framed;
        if (limit <= c->rx_off) {
            worker_fail(w, c, ERR_MISMATCH, 0);
            return;
        }
        size_t take = min_sz(limit - c->rx_off, left);
        bench_frame_bytes(w->cfg, bench_msg_key(c->id, s->seq), s->size, c->rx_off,
                          w->expbuf, take);
        if (memcmp(p, w->expbuf, take) != 0) {
            worker_fail(w, c, ERR_MISMATCH, 0);
            return;
        }
        c->rx_off += take;
        p += take;
        left -= take;
        if (c->rx_off == s->framed) {
            worker_resolve(w, c, s, 1, w->now);
            c->head = (c->head + 1) % c->cap;
            c->count--;
            c->rx_off = 0;
        }
    }
    conn_pump(w, c);
}

/* ---- datagrams ----------------------------------------------------------- */

static void dgram_flush(struct wctx *w, struct bconn *c)
{
    while (c->unsent > 0) {
        struct bslot *s = slot_at(c, c->count - c->unsent);
        bench_dgram_bytes(c->id, s->seq, s->size, w->txbuf);
        ssize_t r = send(c->fd, w->txbuf, s->size, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == ENOBUFS) {
                if (!c->out_armed)
                    worker_arm_out(w, c, 1);
                return;
            }
            io_failed(w, c, errno);
            return;
        }
        s->t_sent = w->now;
        add_sent(w, (size_t)r);
        c->unsent--;
    }
    if (c->out_armed)
        worker_arm_out(w, c, 0);
}

/* Answered or failed datagrams leave from the front, in order. */
static void dgram_pop_done(struct bconn *c)
{
    while (c->count > c->unsent && slot_at(c, 0)->done) {
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
}

static void dgram_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = recv(c->fd, w->rxbuf, w->bufsz, 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            io_failed(w, c, errno);
        return;
    }
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
        return;
    }
    bench_dgram_bytes(c->id, s->seq, s->size, w->expbuf);
    int ok = (size_t)r == s->size && memcmp(w->rxbuf, w->expbuf, s->size) == 0;
    if (!ok) {
        w->bw->c.errors[ERR_MISMATCH]++;
        w->bw->c.last_errno[ERR_MISMATCH] = 0;
    }
    worker_resolve(w, c, s, ok, w->now);
    s->done = 1;
    dgram_pop_done(c);
    conn_pump(w, c);
}

/* ---- stream mode ----------------------------------------------------------- */

static void bulk_write(struct wctx *w, struct bconn *c)
{
    size_t chunk = w->cfg->size_max; /* at most BENCH_IO_BUF (checked at start) */
    /* A few writes, then let the other connections have a turn. */
    for (int i = 0; i < 4; i++) {
        ssize_t r = send(c->fd, stream_bytes(c->s_key, c->s_tx), chunk, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                io_failed(w, c, errno);
            return;
        }
        c->s_tx += (uint64_t)r;
        c->t_progress = w->now;
        add_sent(w, (size_t)r);
        if ((size_t)r < chunk)
            return;
    }
}

static void bulk_read(struct wctx *w, struct bconn *c)
{
    ssize_t r = recv(c->fd, w->rxbuf, w->bufsz, 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            io_failed(w, c, errno);
        return;
    }
    if (r == 0) {
        /* Closed while its echo was still owed: a short read. A discard
         * server that hangs up is "other" (errno 0: closed by the peer). */
        worker_fail(w, c, c->s_rx > 0 && c->s_rx < c->s_tx ? ERR_SHORT : ERR_OTHER, 0);
        return;
    }
    if (c->s_rx + (uint64_t)r > c->s_tx ||
        memcmp(w->rxbuf, stream_bytes(c->s_key, c->s_rx), (size_t)r) != 0) {
        worker_fail(w, c, ERR_MISMATCH, 0);
        return;
    }
    c->s_rx += (uint64_t)r;
    c->t_progress = w->now;
    add_recv(w, (size_t)r);
}

/* ---- connect mode ----------------------------------------------------------- */

int conn_begin_request(struct wctx *w, struct bconn *c)
{
    uint8_t measured;
    if (!worker_claim(w, w->now, &measured))
        return 0;
    c->head = c->count = c->unsent = 0;
    c->tx_off = c->rx_off = 0;
    push_slot(w, c, w->now, measured);
    return 1;
}

static void req_write(struct wctx *w, struct bconn *c)
{
    char req[16];
    int len = snprintf(req, sizeof req, "%u\n", (unsigned)slot_at(c, 0)->size);
    while (c->unsent && c->tx_off < (uint64_t)len) {
        ssize_t r = send(c->fd, req + c->tx_off, (size_t)len - c->tx_off, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->out_armed)
                    worker_arm_out(w, c, 1);
                return;
            }
            io_failed(w, c, errno);
            return;
        }
        add_sent(w, (size_t)r);
        c->tx_off += (uint64_t)r;
    }
    c->unsent = 0;
    if (c->out_armed)
        worker_arm_out(w, c, 0);
}

static void req_read(struct wctx *w, struct bconn *c)
{
    struct bslot *s = slot_at(c, 0);
    /* Exactly the bytes asked for: never read into what may follow. */
    ssize_t r = recv(c->fd, w->rxbuf, min_sz(s->size - c->rx_off, w->bufsz), 0);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR)
            io_failed(w, c, errno);
        return;
    }
    w->now = bench_now_ns();
    if (r == 0) {
        worker_fail(w, c, ERR_SHORT, 0);
        return;
    }
    add_recv(w, (size_t)r);
    c->rx_off += (uint64_t)r;
    if (c->rx_off == s->size) {
        worker_resolve(w, c, s, 1, w->now);
        c->count = 0;
        worker_recycle(w, c);
    }
}

/* ---- what the loop calls ------------------------------------------------------ */

void conn_opened(struct wctx *w, struct bconn *c)
{
    switch (w->cfg->mode) {
    case MODE_STREAM:
        pthread_once(&table_once, table_init);
        if (!table) {
            worker_fail(w, c, ERR_OTHER, ENOMEM);
            return;
        }
        c->s_key = bench_msg_key(c->id, c->next_seq++);
        c->s_tx = c->s_rx = 0;
        c->t_progress = w->now;
        worker_arm_out(w, c, 1); /* always: write as fast as it goes */
        bulk_write(w, c);
        break;
    case MODE_CONNECT:
        slot_at(c, 0)->t_sent = w->now;
        req_write(w, c);
        break;
    default:
        conn_pump(w, c);
        break;
    }
}

void conn_event(struct wctx *w, struct bconn *c, uint32_t ev)
{
    int fd = c->fd;
    const struct bench_cfg *cfg = w->cfg;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (cfg->mode == MODE_STREAM)
            bulk_read(w, c);
        else if (cfg->mode == MODE_CONNECT)
            req_read(w, c);
        else if (cfg->stream)
            msg_read(w, c);
        else
            dgram_read(w, c);
    }
    /* The read may have failed it, or finished it and started another. */
    if (!(ev & EPOLLOUT) || c->fd != fd || c->state != C_OPEN)
        return;
    if (cfg->mode == MODE_STREAM)
        bulk_write(w, c);
    else if (cfg->mode == MODE_CONNECT)
        req_write(w, c);
    else if (cfg->stream)
        msg_flush(w, c);
    else
        dgram_flush(w, c);
}

void conn_pump(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    if (c->state != C_OPEN)
        return;
    uint8_t measured;
    if (cfg->mode == MODE_PINGPONG) {
        while (c->count < c->cap && worker_claim(w, w->now, &measured))
            push_slot(w, c, w->now, measured);
    } else if (cfg->mode == MODE_RATE) {
        while (c->count < c->cap && c->next_k < c->due_k) {
            int64_t t = worker_rate_time(w, c, c->next_k);
            if (!worker_claim(w, t, &measured))
                break;
            c->next_k++;
            push_slot(w, c, t, measured);
        }
    } else {
        return;
    }
    if (cfg->stream)
        msg_flush(w, c);
    else
        dgram_flush(w, c);
}

void conn_sweep(struct wctx *w, struct bconn *c)
{
    const struct bench_cfg *cfg = w->cfg;
    int64_t limit = w->now - cfg->timeout_ns;
    if (cfg->mode == MODE_STREAM) {
        if (c->t_progress < limit)
            worker_fail(w, c, ERR_TIMEOUT, ETIMEDOUT);
        return;
    }
    if (c->count == 0)
        return;
    if (cfg->stream) {
        /* The oldest message waited too long: the stream cannot be trusted
         * past it, so everything in flight times out with it. */
        if (slot_at(c, 0)->t_sent < limit) {
            uint32_t n = c->count;
            worker_fail(w, c, ERR_TIMEOUT, ETIMEDOUT);
            if (n > 1) {
                w->bw->c.errors[ERR_TIMEOUT] += n - 1;
            }
        }
        return;
    }
    /* Datagrams: each one on its own; the connection carries on. */
    uint32_t sent = c->count - c->unsent;
    for (uint32_t i = 0; i < sent; i++) {
        struct bslot *s = slot_at(c, i);
        if (!s->done && s->t_sent < limit) {
            w->bw->c.errors[ERR_TIMEOUT]++;
            w->bw->c.last_errno[ERR_TIMEOUT] = ETIMEDOUT;
            worker_resolve(w, c, s, 0, w->now);
            s->done = 1;
        }
    }
    dgram_pop_done(c);
    conn_pump(w, c);
}
