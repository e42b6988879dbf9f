/*
 * Inside one bench thread: its connections and the loop that drives them.
 * bench_worker.c owns the loop, the clock, connecting and failing;
 * bench_conn.c moves the bytes of each mode on an open connection.
 */
#ifndef IOPLEX_BENCH_CONN_H
#define IOPLEX_BENCH_CONN_H

#include "bench.h"

#include <stdint.h>

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

enum bconn_state { C_IDLE, C_CONNECTING, C_OPEN, C_FINISHED };

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
};

static inline struct bslot *slot_at(struct bconn *c, uint32_t i)
{
    return &c->ring[(c->head + i) % c->cap];
}

/* bench_worker.c, for bench_conn.c */
int64_t bench_now_ns(void);
/* May a new message be issued now, and is it measured? intended: the time
 * it counts from. Claims a -n ticket when measured. 1 yes, 0 no. */
int worker_claim(struct wctx *w, int64_t intended, uint8_t *measured);
/* A message is over: answered (ok) or failed (counted under `kind`). */
void worker_resolve(struct wctx *w, struct bconn *c, struct bslot *s, int ok,
                    int64_t when);
/* Count an error of `kind` (err: errno or 0), fail every message in
 * flight, close, and schedule a new connection. */
void worker_fail(struct wctx *w, struct bconn *c, enum bench_err kind, int err);
/* Close after a finished request (connect mode) and start the next. */
void worker_recycle(struct wctx *w, struct bconn *c);
void worker_arm_out(struct wctx *w, struct bconn *c, int on);
/* A rate-mode connection's k-th message is due at this time. */
int64_t worker_rate_time(const struct wctx *w, const struct bconn *c, uint64_t k);

/* bench_conn.c, for bench_worker.c */
/* The connection just opened: start its traffic. */
void conn_opened(struct wctx *w, struct bconn *c);
/* epoll reported events on an open connection. */
void conn_event(struct wctx *w, struct bconn *c, uint32_t events);
/* Issue what may be issued (pipeline, schedule) and write it. */
void conn_pump(struct wctx *w, struct bconn *c);
/* Time out what waited too long. */
void conn_sweep(struct wctx *w, struct bconn *c);
/* Connect mode: a new request begins with the connect. 0 if none may. */
int conn_begin_request(struct wctx *w, struct bconn *c);

#endif
