/*
 * Inside one bench thread: its connections and the loop that drives them.
 * bench_worker.c owns the loop, the clock, connecting, failing and
 * reconnecting; it calls down into bench_conn.c, which moves the bytes of
 * each mode on an open connection and answers with what the loop is to do
 * next (struct bstep). bench_conn.c never calls back up.
 */
#ifndef IOPLEX_BENCH_CONN_H
#define IOPLEX_BENCH_CONN_H

#include "bench.h"

#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/* A message in flight. */
struct bslot {
    uint64_t seq;
    int64_t t_issue;  /* latency counts from here: the schedule in rate mode */
    int64_t t_sent;   /* its first byte went out (0: not yet); timeouts count from here */
    uint32_t size;    /* payload */
    uint32_t framed;  /* bytes on the wire */
    uint8_t measured; /* issued inside the measured window (or holds a -n ticket) */
    uint8_t done;     /* datagrams: answered or failed, awaiting its turn to leave */
};

enum bconn_state { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_FINISHED };

struct bconn {
    int fd;
    uint32_t id;      /* over all threads: seeds the patterns */
    uint32_t local;   /* index in this thread */
    uint8_t state, out_armed;
    uint32_t fails;   /* failures in a row, for the back-off */
    int64_t t_state;  /* connecting: since when; idle: when to retry */
    uint64_t next_seq;
    /* Messages in flight, oldest first: ring[head .. head+count). The last
     * `unsent` of them are not fully written; tx_off bytes of the first
     * of those are. rx_off bytes of the oldest have come back. */
    struct bslot *ring;
    uint32_t cap, head, count, unsent;
    uint64_t tx_off, rx_off;
    /* rate: this connection's next scheduled message, and how many of its
     * messages are due by now */
    uint64_t next_k, due_k;
    /* stream: bytes of the endless pattern written and echoed back */
    uint64_t s_key, s_tx, s_rx;
    int64_t t_progress;
    struct ssl_st *ssl;  /* --tls */
    int64_t t_hs;        /* --tls: when the handshake began */
};

struct wctx {
    struct bench_worker *bw;
    const struct bench_cfg *cfg;
    struct bench_shared *sh;
    int ep;
    struct bconn *conns;
    uint32_t n;
    uint8_t *txbuf, *rxbuf, *expbuf;
    size_t bufsz;
    int64_t now;
    int measuring;       /* now is inside [t_measure, t_end) */
    int ending;          /* past t_end or out of -n tickets: no new messages */
    int exhausted;       /* the -n budget is spent */
    uint64_t resolved_pending; /* -n: resolved here, not yet added to shared */
    uint64_t measured_inflight;
    int64_t next_retry;  /* earliest retry of an idle connection */
    /* rate mode: the thread's schedule t_start + offset + m * interval */
    double interval_ns;
    int64_t offset_ns;
    uint64_t m_next, m_measure_lo, m_end; /* m in [lo, end) are measured */
    uint64_t issued_measured;
    struct ssl_session_st *session; /* --tls-resume: the first connection's */
};

static inline struct bslot *slot_at(struct bconn *c, uint32_t i)
{
    return &c->ring[(c->head + i) % c->cap];
}

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Rate mode: when the thread's m-th message is due. A connection's k-th
 * message is the thread's m = k * n + local. */
static inline int64_t sched_time(const struct wctx *w, uint64_t m)
{
    return w->sh->t_start + w->offset_ns + (int64_t)((double)m * w->interval_ns);
}

/* What the loop is to do with a connection once its bytes have moved. */
enum bnext {
    B_KEEP, /* carry on */
    B_FAIL, /* count an error of `kind` (ERR_KINDS: the server closed it
             * while idle, not an error), fail every message in flight,
             * close, and schedule a new connection */
    B_DONE, /* connect mode: its request is answered; close, start the next */
};

struct bstep {
    uint8_t next;     /* enum bnext */
    uint8_t kind;     /* enum bench_err, for B_FAIL */
    int err;          /* errno or 0, for B_FAIL */
};

/* bench_conn.c, for bench_worker.c. Each call that moves bytes answers
 * with the step the loop is to take next. */
/* The connection just opened: start its traffic. */
struct bstep conn_opened(struct wctx *w, struct bconn *c);
/* epoll reported events on an open connection. */
struct bstep conn_event(struct wctx *w, struct bconn *c, uint32_t events);
/* Issue what may be issued (pipeline, schedule) and write it. */
struct bstep conn_pump(struct wctx *w, struct bconn *c);
/* Time out what waited too long. */
struct bstep conn_sweep(struct wctx *w, struct bconn *c);
/* Connect mode: a new request begins with the connect. 0 if none may. */
int conn_begin_request(struct wctx *w, struct bconn *c);
/* A message is over: answered (ok) or failed; counted, and its latency
 * recorded when measured. */
void conn_resolve(struct wctx *w, struct bconn *c, struct bslot *s, int ok,
                  int64_t when);
/* Watch for room to write (on) or stop watching. */
void conn_arm_out(struct wctx *w, struct bconn *c, int on);

/* bench_tls.c, for both: --tls on a connection. */
/* The socket is connected: make its SSL (with the kept session to
 * resume) and begin the handshake. 0, or a negative errno. */
int btls_start(struct wctx *w, struct bconn *c);
/* A handshake step: 1 done (timed, counted), 0 waiting (epoll interest
 * set), or -1 failed (the reason kept; the loop fails it as ERR_TLS, or
 * as the socket's errno in *err). */
int btls_handshake(struct wctx *w, struct bconn *c, int *err);
/* recv() and send() through OpenSSL: -1 with EAGAIN to wait, EPROTO for
 * a TLS failure (the reason kept); 0 the end (close_notify or not). */
ssize_t btls_recv(struct wctx *w, struct bconn *c, void *buf, size_t len);
ssize_t btls_send(struct wctx *w, struct bconn *c, const void *buf, size_t len);
/* Decrypted bytes OpenSSL holds that epoll cannot know of. */
int btls_pending(const struct bconn *c);
/* Before close: keep the session (--tls-resume), send close_notify if
 * the connection ends well (clean), free the SSL. */
void btls_close(struct wctx *w, struct bconn *c, int clean);

static inline ssize_t bconn_recv(struct wctx *w, struct bconn *c, void *buf, size_t len)
{
    return c->ssl ? btls_recv(w, c, buf, len) : recv(c->fd, buf, len, 0);
}

static inline ssize_t bconn_send(struct wctx *w, struct bconn *c, const void *buf, size_t len)
{
    return c->ssl ? btls_send(w, c, buf, len) : send(c->fd, buf, len, MSG_NOSIGNAL);
}

#endif
