/*
 * What the library's files share and the public header does not show:
 * the server, the connection, and the interface every model implements.
 * Public names are iop_*, internal ones iop__* (as libuv's uv_/uv__).
 */
#ifndef IOP_INTERNAL_H
#define IOP_INTERNAL_H

#include "ioplex.h"
#include "stream/buf.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- models ------------------------------------------------------------ */

struct iop__model {
    struct iop_model_info info;
    /* Serve on s->listen_fd until s->stopping (or the first client with
     * `once`). Returns 0 or a negative errno. */
    int (*run)(iop_server *s);
};

extern const struct iop__model iop__model_iterative;
extern const struct iop__model iop__model_fork;
extern const struct iop__model iop__model_thread;

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
    pid_t owner;          /* the process that bound the listener */
    int last_accept_err;  /* so an accept failure is reported once */
    char address[IOP_HOST_MAX + IOP_PATH_MAX + 32];
};

/* Wait for a connection on the listener or a stop. Returns the accepted
 * descriptor (CLOEXEC), -ECANCELED once stopping, or another negative
 * errno (EMFILE, ECONNABORTED, ...) the caller decides about. */
int iop__accept(iop_server *s, struct sockaddr_storage *peer, socklen_t *peerlen);
/* accept4() once, without waiting; -EAGAIN if no client is pending. Sets
 * the options every accepted socket gets (TCP_NODELAY). */
int iop__accept_one(iop_server *s, struct sockaddr_storage *peer, socklen_t *peerlen);
/* Poll one descriptor together with the stop pipe. Returns 1 if fd is
 * ready, 0 on timeout, -ECANCELED once stopping. */
int iop__wait_fd(iop_server *s, int fd, short events, int timeout_ms);
int iop__stopping(const iop_server *s);
/* Milliseconds on the monotonic clock. */
uint64_t iop__now_ms(void);
/* Log an accept() failure once per kind, and pause on descriptor
 * exhaustion so the loop does not spin. */
void iop__accept_failed(iop_server *s, int err);
void iop__accept_ok(iop_server *s);

/* ---- connections ------------------------------------------------------- */

struct iop_conn {
    int fd;
    iop_server *server;
    const struct iop_service *svc;
    enum iop_framing framing;
    size_t max_frame;
    struct iop_buf in;  /* received, not yet framed */
    struct iop_buf out; /* queued for the peer */
    int closing;        /* iop_close() called: flush, then close */
    int error;          /* first I/O error, negative errno */
    void *data;         /* the service's per-connection state */
    uint64_t drain_deadline; /* iop__now_ms() bound on output once stopping */
    uint64_t id;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    char peer_name[IOP_PATH_MAX + 16];
};

void iop__conn_init(iop_conn *c, iop_server *s, int fd,
                    const struct sockaddr_storage *peer, socklen_t peerlen);
/* Cut complete frames out of c->in and deliver them to on_message, until
 * the input runs out or the service closes. Returns 0 or -EMSGSIZE. */
int iop__conn_dispatch(iop_conn *c);
/* The peer's stream ended: a last line without its "\n" is still a
 * message (as for most line readers); a partial len32 frame is dropped. */
void iop__conn_eof(iop_conn *c);
/* Free the buffers (the descriptor is the caller's to close). */
void iop__conn_release(iop_conn *c);

/* Serve one stream connection to its end with blocking calls (the path of
 * the iterative, fork and thread models). The caller closes fd. */
void iop__serve_blocking(iop_server *s, int fd,
                         const struct sockaddr_storage *peer, socklen_t peerlen);

struct iop_peer {
    iop_server *server;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* Serve datagrams on s->listen_fd until stopping (iterative server of the
 * course: recvfrom, on_datagram, sendto). */
int iop__serve_datagrams(iop_server *s);

#endif
