/*
 * The connection: what every model's connection path shares (conn.c), and
 * the datagram peer.
 */
#ifndef IOP_STREAM_CONN_H
#define IOP_STREAM_CONN_H

#include "../internal.h"
#include "buf.h"
#include "outq.h"

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
    IOP__CONN_OPENED = 1u << 8,   /* on_open has been called (layers.h) */
};

struct iop__mailbox; /* stream/mailbox.h */
struct iop__msg;
struct iop__tls_conn; /* tls/tls.h */
struct iop__proxy_reader; /* stream/layers.c */

/* Kept small on purpose: an idle event-loop connection is this struct and
 * nothing else (both buffers empty and unallocated). */
struct iop_conn {
    int fd;
    unsigned flags;
    iop_server *server;
    struct iop__buf in;   /* received, not yet framed */
    struct iop__outq out; /* queued for the peer */
    void *data;          /* the service's per-connection state */
    uint64_t id;
    char *peer_name;     /* formatted on first use */
    union iop__peer_addr peer;
    socklen_t peerlen;
    int error;           /* first I/O error, negative errno */
    /* The layers between the socket and the service (layers.h): a PROXY
     * header still to read, a TLS session; NULL on a plain connection. */
    struct iop__proxy_reader *proxy;
    struct iop__tls_conn *tls;
    /* Complete messages delivered, and layers completed (a handshake):
     * what a model counts as progress for the idle timeout. */
    uint32_t progress;
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
 * (-v) and on_open (the layers call it, layers.h); why it closes where that is news (idle, not reading,
 * an error other than a peer's reset or a stop), then on_close, once (err
 * 0 for an orderly close); the "close" line (-v) once its descriptor is
 * done with; a message over --max-frame: said, and the connection closed
 * after its output. `via`: the address the connection really came from,
 * when a PROXY header named another client (else NULL). */
void iop__conn_opened(iop_conn *c, const struct sockaddr *via, socklen_t vialen);
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
/* The same on the thread that takes the stop signal (iterative, a fork or
 * prefork child), where a stop must end a blocked recv(): the stop shuts
 * the connection's reading side (s->inline_fd), so what was received is
 * answered. Closes fd. */
void iop__serve_inline(iop_server *s, int fd,
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
