/* The worker loops of the event models: their listeners, bound with the
 * server's, and starting and joining them (workers.h). */
#include "model/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int iop__worker_listeners_bind(iop_server *s, char *err)
{
    unsigned n = s->cfg.workers;
    /* Sockets passed in (socket activation) are shared by the workers:
     * binding more would be outside what the passer gave us. */
    if (!s->model->backend || n < 2 || iop_transport_is_unix(s->cfg.addr.transport) ||
        s->listeners)
        return 0;
    s->worker_fds = malloc((n - 1) * sizeof *s->worker_fds);
    if (!s->worker_fds) {
        snprintf(err, IOP_ERR_LEN, "out of memory");
        return -ENOMEM;
    }
    for (; s->n_worker_fds < n - 1; s->n_worker_fds++) {
        int r = iop__listen(&s->bound, s->cfg.backlog, IOP__LISTEN_REUSEPORT,
                            &s->worker_fds[s->n_worker_fds], NULL, err);
        if (r != 0)
            return r;
    }
    return 0;
}

void iop__worker_listeners_close(iop_server *s)
{
    for (unsigned i = 0; i < s->n_worker_fds; i++)
        if (s->worker_fds[i] >= 0)
            close(s->worker_fds[i]);
    free(s->worker_fds);
    s->worker_fds = NULL;
    s->n_worker_fds = 0;
}

int iop__worker_take_listener(iop_server *s, unsigned i)
{
    if (i == 0 || i > s->n_worker_fds)
        return s->listen_fd;
    int fd = s->worker_fds[i - 1];
    s->worker_fds[i - 1] = -1;
    return fd;
}

int iop__run_workers(iop_server *s, void *workers, unsigned n, size_t size,
                     void *(*main)(void *))
{
    char *w = workers;
    pthread_t *threads = n > 1 ? calloc(n, sizeof *threads) : NULL;
    if (n > 1 && !threads)
        return -ENOMEM;
    int r = 0;
    unsigned started = 1;
    for (; started < n; started++) {
        int e = pthread_create(&threads[started], NULL, main, w + started * size);
        if (e != 0) {
            r = iop__fail(s, -e, "cannot start worker %u of %u: %s", started + 1, n,
                          strerror(e));
            iop_server_stop(s); /* the workers already running wind down */
            break;
        }
    }
    main(w); /* the calling thread is worker 0; at once back if stopped */
    for (unsigned i = 1; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    return r;
}

void iop__worker_init(struct iop__worker *w, iop_server *s, unsigned i, atomic_uint *live)
{
    w->s = s;
    w->live = live;
    w->listen_fd = iop__worker_take_listener(s, i);
    w->owns_listener = w->listen_fd != s->listen_fd;
    iop__acceptor_init(&w->acc, s, w->listen_fd);
}

int iop__worker_done(struct iop__worker *w)
{
    if (w->owns_listener && w->listen_fd >= 0)
        close(w->listen_fd);
    w->listen_fd = -1;
    return w->result;
}
