/*
 * thread: a thread per client. The main thread accepts and starts a
 * detached thread that serves the connection with blocking calls. Threads
 * share the process's memory, so a service with shared state runs here
 * (behind its own locks).
 *
 * Threads get a small stack (THREAD_STACK): the default 8 MiB of address
 * space each would make thousands of clients need gigabytes of it.
 *
 * A thread that cannot be started (EAGAIN: RLIMIT_NPROC, or no memory
 * for its stack): that connection is closed (its client sees a clean
 * end-of-stream), the failure is reported once, and accepting pauses for
 * THREAD_PAUSE_MS so a full backlog is not accepted and dropped in a
 * tight loop. "thread: recovered" comes once the server has caught up: a
 * thread has started since the last failure and no client is waiting
 * (at the limit each thread that ends lets one through: reporting each
 * would make two lines per client).
 *
 * Stop: the main thread stops accepting and shuts the reading side of
 * every live connection, so each thread's recv() returns end-of-stream;
 * the thread answers what it has received and exits. The main thread
 * waits for them; after drain_ms it shuts the writing side too, so a
 * thread blocked sending to a peer that does not read gets EPIPE. (The
 * registry of live connections is src/model/registry.c, shared with pool.)
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
#include "model/registry.h"
#include "tls/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (256 * 1024)
#define THREAD_PAUSE_MS 100

struct job {
    iop_server *s;
    struct iop__registry *reg;
    int fd;
    struct sockaddr_storage peer;
    socklen_t peerlen;
};

static void *serve_thread(void *arg)
{
    struct job *j = arg;
    /* Unregister before the descriptor is closed, so stop can never shut
     * down a number that has been reused. */
    iop__serve_blocking(j->s, j->fd, &j->peer, j->peerlen);
    iop__tls_thread_done(j->s);
    iop__registry_remove(j->reg, j->fd);
    close(j->fd);
    free(j);
    return NULL;
}

static int start_thread(struct job *j)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    pthread_t t;
    int e = pthread_create(&t, &attr, serve_thread, j);
    pthread_attr_destroy(&attr);
    return -e;
}

static int run_thread(iop_server *s)
{
    struct iop__registry reg;
    int r = iop__registry_init(&reg);
    if (r != 0)
        return r;
    int served = 0;
    struct iop__episode failing = {0, 0, 0}; /* pthread_create() failures */
    while (!(s->cfg.once && served)) {
        if (iop__episode_may_end(&failing) && iop__acceptor_listener_idle(&s->acceptor)) {
            iop_report(s, IOP_LOG_INFO, "thread: recovered");
            iop__episode_end(&failing);
        }
        struct job *j = malloc(sizeof *j);
        if (!j) {
            iop__accept_failed(s, -ENOMEM);
            continue;
        }
        j->s = s;
        j->reg = &reg;
        j->fd = iop__accept(s, &j->peer, &j->peerlen);
        if (j->fd < 0) {
            int err = j->fd;
            free(j);
            if (err == -ECANCELED)
                break;
            iop__accept_failed(s, err);
            continue;
        }
        if (!iop__acceptor_take(&s->acceptor, j->fd, (unsigned)iop__registry_count(&reg))) {
            free(j);
            continue;
        }
        int err = iop__registry_add(&reg, j->fd);
        if (err == 0) {
            err = start_thread(j);
            if (err != 0)
                iop__registry_remove(&reg, j->fd);
        }
        if (err != 0) {
            if (iop__episode_fail(&failing, err))
                iop_report(s, IOP_LOG_ERROR, "cannot start a thread: %s; closing "
                           "new connections until one starts", iop_strerror(err));
            close(j->fd);
            free(j);
            iop__wait_fd(s, -1, 0, THREAD_PAUSE_MS); /* ends early on stop */
            continue;
        }
        iop__episode_ok(&failing);
        served = 1;
    }
    if (iop__stopping(s)) {
        iop__registry_shutdown_all(&reg, SHUT_RD);
        size_t left = iop__registry_wait_empty(&reg, s->cfg.drain_ms);
        if (left > 0) {
            /* Peers that do not read: give up on their output, which
             * makes every blocked send() fail, so their threads end. */
            iop_report(s, IOP_LOG_INFO, "%zu connections still busy after "
                       "%d ms; closing them", left, s->cfg.drain_ms);
            iop__registry_shutdown_all(&reg, SHUT_RDWR);
        }
    }
    iop__registry_wait_empty(&reg, -1);
    free(reg.fds);
    return 0;
}

const struct iop__model iop__model_thread = {
    .info = {
        .name = "thread",
        .summary = "a thread per client",
        .datagram = 0,
        .shared_state = 1,
    },
    .run = run_thread,
};
