/*
 * The interface every concurrency model implements, and the models
 * compiled in (server.c lists them).
 */
#ifndef IOP_MODEL_H
#define IOP_MODEL_H

#include "ioplex.h"

struct iop_server;

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
    /* Accepts from one listener only (its own loop or ring watches
     * s->listen_fd): refuses several inherited listeners. */
    int one_listener;
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

#endif
