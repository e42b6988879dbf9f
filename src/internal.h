/*
 * What the library's files share and the public header does not show:
 * the server, the connection, and the interface every model implements.
 * Public names are iop_*, internal ones iop__* (as libuv's uv_/uv__).
 */
#ifndef IOP_INTERNAL_H
#define IOP_INTERNAL_H

#include "ioplex.h"
#include "stream/buf.h"
#include "stream/outq.h"

#include <signal.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- models ------------------------------------------------------------ */

struct iop__model {
    struct iop_model_info info;
    /* The event-loop models: the readiness backend ("io_uring" for uring).
     * Non-NULL means the model runs its own loops: workers bind their own
     * SO_REUSEPORT listeners, and datagrams go to run() too. */
    const char *backend;
    /* Serves one connection at a time (iterative): refuses a service
     * flagged IOP_SERVICE_CLIENTS_TOGETHER. */
    int one_at_a_time;
    /* For the default --max-conns (iop_server_open()): the descriptors a
     * connection holds (0: one), the highest descriptor the model can
     * watch (0: any; select: FD_SETSIZE), and the most connections it can
     * serve at all (0: no limit of its own; a larger --max-conns is a
     * usage error). */
    unsigned conn_fds;
    unsigned fd_ceiling;
    unsigned max_conns_ceiling;
    /* Serve on s->listen_fd until s->stopping (or the first client with
     * `once`). Returns 0 or a negative errno. */
    int (*run)(iop_server *s);
    /* Optional: can the model run here at all? Called by iop_server_open()
     * before binding. Returns 0, or a negative errno and a sentence in err
     * (IOP_ERR_LEN bytes). */
    int (*check)(char *err);
};

extern const struct iop__model iop__model_iterative;
extern const struct iop__model iop__model_fork;
extern const struct iop__model iop__model_thread;
extern const struct iop__model iop__model_prefork, iop__model_pool,
    iop__model_aio;
extern const struct iop__model iop__model_epoll, iop__model_kqueue,
    iop__model_poll, iop__model_select;
#ifdef IOPLEX_HAVE_URING
extern const struct iop__model iop__model_uring;
#endif

/* ---- sockets ------------------------------------------------------------ */

enum { IOP__LISTEN_REUSEPORT = 1u << 0 };
/* iop_listen() with options: SO_REUSEPORT lets each event-loop worker
 * bind a listener of its own to the same address. */
int iop__listen(const struct iop_addr *a, int backlog, unsigned flags, int *fd,
                struct iop_addr *bound, char *err);
/* O_NONBLOCK on: 0 or a negative errno. */
int iop__set_nonblocking(int fd);
/* A Unix listener's socket file: its mode (0: as bind() makes it) and
 * owner (-1: left to the binding process). */
struct iop__sockfile {
    unsigned mode;
    uid_t uid;
    gid_t gid;
};
/* iop__listen(), with a Unix socket's file made as `file` says (NULL: as
 * bind() makes it). A mode above 07777, or one for an IP address, is
 * -EINVAL before anything is bound. */
int iop__listen_file(const struct iop_addr *a, int backlog, unsigned flags,
                     const struct iop__sockfile *file, int *fd,
                     struct iop_addr *bound, char *err);

/* ---- privileges (privilege.c) ------------------------------------------- */

struct iop__user {
    uid_t uid;
    gid_t gid;
};
/* Look the user up, before anything is bound: -EINVAL for an unknown
 * user or, without allow_root, one with uid 0; -EPERM if this process is
 * not root. */
int iop__user_lookup(const char *name, int allow_root, struct iop__user *u,
                     char *err);
/* Become the user looked up: supplementary groups, group, then user, and
 * check that it took (root cannot be regained). */
int iop__user_become(const char *name, const struct iop__user *u, char *err);

/* ---- failure episodes ---------------------------------------------------- */

/* A failure that repeats until it passes (EMFILE at accept(), EAGAIN at
 * fork() or pthread_create()) is one episode: reported when it starts (or
 * changes kind), and its end once, when the server has caught up: it has
 * succeeded since the last failure and nothing is left waiting. Not at
 * the first success: at a limit each freed slot lets one through before
 * the next fails, and a line for each would be a flood. */
struct iop__episode {
    int err;  /* the failure last reported, 0 if none */
    int took; /* a success since then */
    unsigned long count; /* failures in this episode */
};
/* A failure: 1 if it starts an episode (or a new kind): report it. */
static inline int iop__episode_fail(struct iop__episode *e, int err)
{
    int fresh = err != e->err;
    e->err = err;
    e->took = 0;
    e->count = fresh ? 1 : e->count + 1;
    return fresh;
}
static inline void iop__episode_ok(struct iop__episode *e)
{
    if (e->err)
        e->took = 1;
}
/* 1 if the episode can end: it has had a success since. The caller checks
 * that nothing waits (cheap test first), then reports and ends it. */
static inline int iop__episode_may_end(const struct iop__episode *e)
{
    return e->err && e->took;
}
static inline void iop__episode_end(struct iop__episode *e)
{
    e->err = 0;
    e->took = 0;
    e->count = 0;
}

/* An acceptor (net/acceptor.h): the accept policy's state for one thread
 * that accepts. */
struct iop__acceptor {
    iop_server *s;
    int listen_fd;
    struct iop__episode failing;  /* accept() failures: EMFILE, ENFILE, ... */
    struct iop__episode refusing; /* --max-conns, a descriptor select cannot watch */
    atomic_int *shared;           /* prefork: the failure reported, for all children */
};

/* ---- the policy every connection obeys ------------------------------------- */

/* Resolved once, by iop_server_open(), from the configuration and the
 * defaults; the connection paths read this, never the configuration. */
struct iop__policy {
    size_t high_water; /* queued output: reading stops at this */
    size_t low_water;  /* and resumes at this; producers are asked below it */
    int idle_ms;       /* no progress for this long: closed (0: never) */
    int linger_ms;     /* lingering close: input discarded at most this long */
    int drain_ms;      /* at stop: output gets this long to go out */
    int accept_pause_ms; /* accept() out of descriptors: tried again after */
};
/* on_drain calls in a row, at most, before others get their turn. */
#define IOP__PRODUCE_ROUNDS 16

/* ---- server ------------------------------------------------------------ */

struct iop_server {
    struct iop_server_config cfg;
    const struct iop__model *model;
    const struct iop_service *svc;
    enum iop_framing framing;
    size_t max_frame;
    int listen_fd;
    /* Written once by iop_server_stop() and never read, so it stays
     * readable: every poll() that includes it wakes and keeps waking. */
    int stop_pipe[2];
    atomic_int stopping;
    /* The connection served on the thread that takes signals (iterative,
     * a fork child): iop_server_stop() shuts its reading side down so a
     * blocked recv() returns. -1 if none. */
    atomic_int inline_fd;
    atomic_uint_fast64_t next_conn_id;
    /* Workers 1..n-1 of an event model on an IP address: listeners of
     * their own (SO_REUSEPORT), bound by iop_server_open() with the first,
     * so that all binding is done before privileges are dropped. A worker
     * takes its own at run (-1 here then). See model/workers.h. */
    int *worker_fds;
    unsigned n_worker_fds;
    pid_t owner;          /* the process that bound the listener */
    struct iop_addr bound; /* the listener's address, port resolved */
    atomic_uint live_conns; /* event models: open connections, all workers */
    unsigned max_conns;     /* cfg.max_conns, or its default: the limit in force */
    struct iop__policy pol;
    /* The blocking models' accepting (one thread, or a prefork child):
     * net/acceptor.h. The event models' workers have one each. */
    struct iop__acceptor acceptor;
    char address[IOP_HOST_MAX + IOP_PATH_MAX + 32];
    char failure[256]; /* why run failed: iop_server_failure() */
};

/* in[0..len) for a terminal or a log, into out (cap bytes, always
 * NUL-terminated, cut at a whole character): control bytes (C0, DEL, C1)
 * and invalid UTF-8 as \xNN, printable UTF-8 as it is. Returns the length
 * written. iop_report() passes every line through it. */
size_t iop__escape(char *out, size_t cap, const char *in, size_t len);

/* Run cannot go on: keep the reason in words for iop_server_failure() (the
 * first one only) and return err. Not reported: the caller says it once. */
int iop__fail(iop_server *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The blocking models' accept (net/acceptor.h has the policy): wait for a
 * client on the listener or a stop. Returns the accepted descriptor
 * (CLOEXEC), -ECANCELED once stopping, or another negative errno for
 * iop__accept_failed(). The caller takes it with iop__acceptor_take(). */
int iop__accept(iop_server *s, struct sockaddr_storage *peer, socklen_t *peerlen);
/* Report an accept() failure once per episode, and pause (ended early by
 * a stop) so that a listener readable for good does not spin. */
void iop__accept_failed(iop_server *s, int err);
/* End the episodes that can end, if no client waits on the listener
 * (iop__accept() does, before it waits). */
void iop__accept_caught_up(iop_server *s);
/* Poll one descriptor together with the stop pipe. Returns 1 if fd is
 * ready, 0 on timeout, -ECANCELED once stopping. */
int iop__wait_fd(iop_server *s, int fd, short events, int timeout_ms);
int iop__stopping(const iop_server *s);
/* Milliseconds on the monotonic clock. */
uint64_t iop__now_ms(void);

/* ---- connections ------------------------------------------------------- */

/* A peer's address, kept small: IP peers whole; a Unix peer (unnamed as
 * a rule) by its family only. */
union iop__peer_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

enum {
    IOP__CONN_CLOSING = 1u << 0,  /* iop_close(): flush, then close */
    IOP__CONN_PEER_EOF = 1u << 1, /* the peer's stream ended */
    IOP__CONN_PAUSED = 1u << 2,   /* output above the high watermark: not reading */
    IOP__CONN_LINGER = 1u << 3,   /* our side shut; discarding input until EOF */
    IOP__CONN_NOTIFIED = 1u << 4, /* on_close has been called */
    IOP__CONN_OVERFLOW = 1u << 5, /* a post passed the high watermark: close now */
    IOP__CONN_KICKED = 1u << 6,   /* its owner has posted output to flush */
    IOP__CONN_GONE = 1u << 7,     /* closed: off every list, being released */
};

struct iop__mailbox; /* stream/mailbox.h */
struct iop__msg;

/* Kept small on purpose: an idle event-loop connection is this struct and
 * nothing else (both buffers empty and unallocated). */
struct iop_conn {
    int fd;
    unsigned flags;
    iop_server *server;
    struct iop_buf in;   /* received, not yet framed */
    struct iop_outq out; /* queued for the peer */
    void *data;          /* the service's per-connection state */
    uint64_t id;
    char *peer_name;     /* formatted on first use */
    union iop__peer_addr peer;
    socklen_t peerlen;
    int error;           /* first I/O error, negative errno */
    uint64_t deadline;   /* stopping: end of drain; lingering: end of linger */
    /* Event path only: the owning worker's list, least recently active first. */
    struct iop_conn *prev, *next;
    uint64_t last_active;
    void *owner;
    /* IOP_SERVICE_SHARED_STATE only: where iop_post() from another thread
     * leaves bytes for this connection (its owner's mailbox); else NULL.
     * And its part of that mailbox (mailbox.c): `posted`, the bytes
     * waiting there for it, with the top bit set once a post would have
     * passed the high watermark; its own queue of posts, and its place on
     * the mailbox's list of connections with news (both under the
     * mailbox's lock), so that a connection's posts are dropped without
     * looking at anyone else's. */
    struct iop__mailbox *mbox;
    _Atomic size_t posted;
    struct iop__msg *mq_tail; /* circular: mq_tail->next is the first */
    iop_conn *mq_next;        /* NULL: not on the list */
};

/* A list of connections, least recently active first: the event paths'
 * idle and lingering lists (evconn.c, uring_conn.c). */
struct iop__connlist {
    iop_conn *head, *tail;
};

static inline void iop__connlist_remove(struct iop__connlist *l, iop_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
}

static inline void iop__connlist_append(struct iop__connlist *l, iop_conn *c)
{
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

/* The peer's name for a log line: the cached iop_conn_peer_name() if
 * there is one, else formatted into buf. Unlike iop_conn_peer_name() it
 * never allocates, so a debug line nobody reads costs no memory. */
const char *iop__conn_peer_str(const iop_conn *c, char *buf, size_t len);
void iop__conn_init(iop_conn *c, iop_server *s, int fd,
                    const struct sockaddr_storage *peer, socklen_t peerlen);
/* Cut complete frames out of c->in and deliver them to on_message, until
 * the input runs out or the service closes. Returns 0 or -EMSGSIZE. */
int iop__conn_dispatch(iop_conn *c);
/* What every model does with a connection, written once: the "open" line
 * (-v) and on_open; why it closes where that is news (idle, not reading,
 * an error other than a peer's reset or a stop), then on_close, once (err
 * 0 for an orderly close); the "close" line (-v) once its descriptor is
 * done with; a message over --max-frame: said, and the connection closed
 * after its output. */
void iop__conn_opened(iop_conn *c);
void iop__conn_notify_close(iop_conn *c, int err);
void iop__conn_close_line(iop_conn *c);
void iop__conn_too_long(iop_conn *c);
/* The same, over bytes that are not in c->in (an event loop's shared read
 * buffer): whole frames are delivered from there, and only a trailing
 * partial frame is copied into c->in. Returns 0, -EMSGSIZE or -ENOMEM. */
int iop__conn_dispatch_bytes(iop_conn *c, const char *p, size_t n);
/* The peer's stream ended: a last line without its "\n" is still a
 * message (as for most line readers); a partial len32 frame is dropped. */
void iop__conn_eof(iop_conn *c);
/* Free the buffers (the descriptor is the caller's to close). */
void iop__conn_release(iop_conn *c);

/* Serve one stream connection to its end with blocking calls (the path of
 * the iterative, fork and thread models). The caller closes fd. */
void iop__serve_blocking(iop_server *s, int fd,
                         const struct sockaddr_storage *peer, socklen_t peerlen);

struct iop__dgram; /* net/dgram.h */

struct iop_peer {
    iop_server *server;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct iop__dgram *gate; /* the receiving thread's: limits and counts */
    size_t req_len;          /* the datagram being answered */
    size_t sent;             /* bytes answered to it so far */
};


#endif
