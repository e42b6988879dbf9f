/*
 * ioplex bench: what its files share.
 *
 *   bench.c         options, set-up, threads, the run's clock, exit code
 *   bench_worker.c  one thread's epoll loop: connections, timers, errors;
 *                   calls down into bench_conn.c, never the other way
 *   bench_conn.c    the bytes on an open connection, per mode, and checks;
 *                   answers the loop with its next step (keep, fail, done)
 *   bench_conn.h    what those two share (the connection, the thread)
 *   bench_pattern.c the bytes sent: a pattern per message, regenerated to check
 *   bench_report.c  the summary, JSON, JSON Lines intervals, hgrm file
 *   bench_tls.c     --tls: the handshake of each connection, timed, and the
 *                   bytes through OpenSSL (tls_client.c below it)
 */
#ifndef IOPLEX_BENCH_H
#define IOPLEX_BENCH_H

#include "cli.h"
#include "../src/stats/hist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

enum bench_mode { MODE_PINGPONG, MODE_RATE, MODE_STREAM, MODE_CONNECT };

/* How a connection or a message can fail. Counted over the whole run,
 * warm-up included; every kind has a sentence in the summary. */
enum bench_err {
    ERR_REFUSED,  /* connect refused (no listener, or its backlog full) */
    ERR_RESET,    /* ECONNRESET / EPIPE */
    ERR_TIMEOUT,  /* no answer (or no connect) within --timeout */
    ERR_SHORT,    /* the peer closed before the full answer */
    ERR_MISMATCH, /* an answer with the wrong bytes */
    ERR_FDLIMIT,  /* EMFILE / ENFILE */
    ERR_TLS,      /* --tls: a failed handshake, verification or record */
    ERR_OTHER,
    ERR_KINDS
};

#define BENCH_DGRAM_MAX 65507 /* the largest UDP payload over IPv4 */
#define BENCH_IO_BUF 65536

struct bench_cfg {
    enum bench_mode mode;
    struct iop_addr addr;
    char target[IOP_HOST_MAX + IOP_PATH_MAX + 32]; /* as printed */
    struct sockaddr_storage peer;  /* the address that answered the probe */
    socklen_t peerlen;
    int stream;                    /* SOCK_STREAM, else datagrams */
    unsigned conns, threads, pipeline;
    uint32_t size_min, size_max;
    double rate;                   /* messages per second in all (rate) */
    enum iop_framing framing;
    uint64_t count;                /* -n; 0: bounded by time only */
    int64_t duration_ns, warmup_ns, timeout_ns;
    int json;
    double interval_s;             /* 0: no intervals */
    const char *interval_file, *hgrm_file;
    int progress;                  /* a live line on stderr (a terminal) */
    const char *hlog_file;         /* --hlog: HdrHistogram interval log (hlog.h) */
    double start_at;               /* --start-at, Unix seconds; 0: now */
    char host[64];                 /* this host's name, in the JSON and the log */
    unsigned n_sources;            /* >0: bind to 127.0.0.2.. in turn */
    int send_proxy;                /* --send-proxy-v2: a PROXY header first */
    long fd_limit;                 /* RLIMIT_NOFILE after raising it */
    /* --tls: the client context (NULL: plain), its sessions resumed
     * (--tls-resume), and the name sent and checked (NULL: none). */
    struct ssl_ctx_st *tls_ctx;
    int tls_resume, tls_verify;
    const char *tls_name;
};

/* One thread's counters. Guarded by the worker's lock while the run is
 * live (intervals or progress read them); plain fields otherwise. */
struct bench_counters {
    uint64_t messages;     /* measured messages answered correctly */
    uint64_t failed;       /* measured messages that failed */
    uint64_t bytes_sent, bytes_recv; /* within the measured window */
    uint64_t connects;     /* connections opened, whole run */
    uint64_t errors[ERR_KINDS];
    int last_errno[ERR_KINDS]; /* what the last one was, for the words */
    uint64_t late;         /* datagram answers that came after their timeout */
    uint64_t idle_closes;  /* connections the server closed while idle */
    uint64_t unfinished;   /* measured messages still unanswered at the end */
    uint64_t never_sent;   /* rate: due, never sent by the end (in timed out) */
    uint64_t handshakes;   /* --tls: completed within the measured window */
    uint64_t resumed;      /* ... of them resumed a session */
    char tls_why[256];     /* the last TLS failure, in words (TLS_WHY_LEN) */
    /* Everything, warm-up included: only for the live progress line. */
    uint64_t all_answered, all_sent, all_recv;
    uint64_t open_now;
};

/* What the threads share: the clock of the run and the -n budget. */
struct bench_shared {
    const struct bench_cfg *cfg;
    int64_t t_start, t_measure, t_end, t_hard; /* monotonic ns */
    atomic_uint_fast64_t tickets;  /* -n: messages claimed so far */
    atomic_uint_fast64_t resolved; /* -n: claimed ones answered or failed */
    atomic_int_fast64_t t_done;    /* when the n-th resolved; 0 before */
    atomic_int stop;               /* main: stop now */
};

struct bench_worker {
    pthread_t thread;
    unsigned index;
    struct bench_shared *sh;
    int live;                      /* take `lock` around each batch */
    pthread_mutex_t lock;
    struct bench_counters c;
    iop__hist hist;                 /* measured latencies (ns) */
    iop__hist ihist;                /* the same since the last interval */
    iop__hist hshist;               /* --tls: measured handshake latencies (ns) */
    int64_t t_finished;
    int setup_error;               /* negative errno if the loop could not start */
    atomic_int done;
};

void *bench_worker_main(void *arg);

/* ---- bench_pattern.c: bytes and patterns ------------------------------ */

/* A 64-bit mix (splitmix64's finalizer). */
uint64_t bench_mix(uint64_t x);
/* The key of message `seq` on connection `id`: seeds its bytes and size. */
uint64_t bench_msg_key(uint32_t id, uint64_t seq);
uint32_t bench_msg_size(const struct bench_cfg *cfg, uint64_t key);
/* Bytes on the wire for a payload of `size` (framing included). */
uint32_t bench_framed_len(const struct bench_cfg *cfg, uint32_t size);
/* Bytes [off, off+n) of the framed message (key, size). */
void bench_frame_bytes(const struct bench_cfg *cfg, uint64_t key, uint32_t size,
                       uint64_t off, uint8_t *dst, size_t n);
/* Bytes [off, off+n) of the endless pattern `key` (stream mode). */
void bench_pattern(uint64_t key, uint64_t off, uint8_t *dst, size_t n);
/* A datagram for message (id, seq): the sequence number first (when it
 * fits), so an answer can be matched however late it comes. */
void bench_dgram_bytes(uint32_t id, uint64_t seq, uint32_t size, uint8_t *dst);

/* ---- bench_report.c ----------------------------------------------------- */

struct bench_result {
    const struct bench_cfg *cfg;
    struct bench_counters c;       /* summed over threads */
    const iop__hist *hist;
    const iop__hist *hshist;       /* --tls: handshake latencies */
    double measured_s;             /* 0: nothing measured */
    const char *stopped_by;        /* "duration", "count", "interrupt", "time limit" */
    unsigned threads;
    double start_unix_s;           /* the measured window's start, wall clock */
    double start_offset_s;         /* --start-at: this host's clock minus it then */
};

const char *bench_mode_name(enum bench_mode m);
const char *bench_err_key(enum bench_err e); /* the JSON name */
uint64_t bench_error_total(const struct bench_counters *c);
void bench_add_counters(struct bench_counters *sum, const struct bench_counters *c);

/* s as a JSON string, quoted and escaped. */
void bench_json_str(FILE *f, const char *s);
void bench_report_human(FILE *f, const struct bench_result *r);
void bench_report_json(FILE *f, const struct bench_result *r);
/* One JSON line for the interval (t0, t1] of the measured window. */
void bench_report_interval(FILE *f, const struct bench_cfg *cfg, double t_s,
                           double len_s, const struct bench_counters *delta,
                           const iop__hist *h);
/* HdrHistogram's percentile distribution, values in milliseconds. */
int bench_write_hgrm(FILE *f, const iop__hist *h);
/* The explanation of an error kind, in words; "" if count is 0. */
void bench_explain(char *buf, size_t len, const struct bench_result *r,
                   enum bench_err e);

#endif
