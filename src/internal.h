/*
 * What the library's files share and the public header does not show,
 * one header per subsystem, gathered here: the server (below), its
 * models (model/model.h), sockets (net/socket.h), privileges
 * (privilege.h), failure episodes (base/episode.h), the connection policy
 * (stream/policy.h), and the connection (stream/conn.h). Public names are
 * iop_*, internal ones iop__* (as libuv's uv_/uv__).
 */
#ifndef IOP_INTERNAL_H
#define IOP_INTERNAL_H

#include "ioplex.h"
#include "base/episode.h"
#include "model/model.h"
#include "net/socket.h"
#include "privilege.h"
#include "stream/policy.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

struct iop__tls;

/* An acceptor (net/acceptor.h): the accept policy's state for one thread
 * that accepts. */
struct iop__acceptor {
    iop_server *s;
    int listen_fd;
    struct iop__episode failing;  /* accept() failures: EMFILE, ENFILE, ... */
    struct iop__episode refusing; /* --max-conns, a descriptor select cannot watch */
    atomic_int *shared;           /* prefork: the failure reported, for all children */
};

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
    /* Sockets made elsewhere (cfg.listen_fds: socket activation, inetd),
     * all of them (listen_fd is the first): net/listeners.c. NULL when
     * the server bound its own. */
    int *listeners;
    unsigned n_listeners;
    unsigned next_listener; /* where iop__accept()'s scan starts, so none starves */
    pid_t owner;          /* the process that bound the listener */
    struct iop_addr bound; /* the listener's address, port resolved */
    unsigned max_conns;     /* cfg.max_conns, or its default: the limit in force */
    struct iop__policy pol;
    struct iop__tls *tls;   /* TLS (tls/tls.h), or NULL */
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
/* Sockets made elsewhere (net/listeners.c). Adopt cfg.listen_fds into s
 * (listen_fd, listeners, bound), after checking each fits the transport
 * and the model: 0, or a negative errno with a sentence in err and
 * nothing taken. */
int iop__listeners_adopt(iop_server *s, char *err);
/* Give them back untaken (iop_server_open() failed: they stay the
 * caller's), or close them (iop_server_close()). */
void iop__listeners_release(iop_server *s);
void iop__listeners_close(iop_server *s);
/* Wait for a client on any of several listeners or a stop: 1 and *fd the
 * ready one, or -ECANCELED. */
int iop__listeners_wait(iop_server *s, int *fd);
/* inetd (nowait): the connection passed, once; -ECANCELED after. */
int iop__listeners_take_conn(iop_server *s, struct sockaddr_storage *peer,
                             socklen_t *peerlen);
/* Report an accept() failure once per episode, and pause (ended early by
 * a stop) so that a listener readable for good does not spin. */
void iop__accept_failed(iop_server *s, int err);
/* End the episodes that can end, if no client waits on the listener
 * (iop__accept() does, before it waits). */
void iop__accept_caught_up(iop_server *s);
/* 1 if a line of this level goes anywhere: a caller whose arguments cost
 * something to make (a peer's name per connection) asks first. */
static inline int iop__reporting(const iop_server *s, enum iop_log level)
{
    return s->cfg.report && (level != IOP_LOG_DEBUG || s->cfg.report_debug);
}
/* Poll one descriptor together with the stop pipe. Returns 1 if fd is
 * ready, 0 on timeout, -ECANCELED once stopping. */
int iop__wait_fd(iop_server *s, int fd, short events, int timeout_ms);
int iop__stopping(const iop_server *s);
/* Milliseconds on the monotonic clock. */
uint64_t iop__now_ms(void);

#include "stream/conn.h"

#endif
