/* Starting and joining the worker loops of the event models (workers.h). */
#include "model/workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int iop__worker_listen_fd(const iop_server *s, unsigned i, unsigned n)
{
    int shared = n == 1 || iop_transport_is_unix(s->cfg.addr.transport);
    return i == 0 || shared ? s->listen_fd : -1;
}

void iop__run_workers(iop_server *s, void *workers, unsigned n, size_t size,
                      void *(*main)(void *))
{
    char *w = workers;
    pthread_t *threads = n > 1 ? calloc(n, sizeof *threads) : NULL;
    unsigned started = 1;
    if (n > 1 && !threads) {
        iop_report(s, IOP_LOG_ERROR, "cannot start %u workers: %s", n, strerror(ENOMEM));
        iop_server_stop(s);
    } else {
        for (; started < n; started++) {
            int e = pthread_create(&threads[started], NULL, main, w + started * size);
            if (e != 0) {
                iop_report(s, IOP_LOG_ERROR, "cannot start worker %u: %s", started,
                           strerror(e));
                iop_server_stop(s);
                break;
            }
        }
    }
    main(w); /* the calling thread is worker 0 */
    for (unsigned i = 1; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
}
