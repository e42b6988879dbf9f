/*
 * thread: a thread per client. The main thread accepts and starts a
 * detached thread that serves the connection with blocking calls. Threads
 * share the process's memory, so a service with shared state runs here
 * (behind its own locks).
 *
 * Threads get a small stack (THREAD_STACK): the default 8 MiB of address
 * space each would make thousands of clients need gigabytes of it.
 *
 * Stop: the main thread stops accepting and shuts the reading side of
 * every live connection, so each thread's recv() returns end-of-stream;
 * the thread answers what it has received and exits. The main thread
 * waits for them; after drain_ms it shuts the writing side too, so a
 * thread blocked sending to a peer that does not read gets EPIPE.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREAD_STACK (256 * 1024)

/* The live connections, so stop can reach their sockets. */
struct registry {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when the last thread leaves */
    int *fds;
    size_t n, cap;
};

struct job {
    iop_server *s;
    struct registry *reg;
    int fd;
    struct sockaddr_storage peer;
    socklen_t peerlen;
};

static int registry_add(struct registry *r, int fd)
{
    pthread_mutex_lock(&r->lock);
    int err = 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        int *p = realloc(r->fds, cap * sizeof *p);
        if (p) {
            r->fds = p;
            r->cap = cap;
        } else {
            err = -ENOMEM;
        }
    }
    if (err == 0)
        r->fds[r->n++] = fd;
    pthread_mutex_unlock(&r->lock);
    return err;
}

static void registry_remove(struct registry *r, int fd)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        if (r->fds[i] == fd) {
            r->fds[i] = r->fds[--r->n];
            break;
        }
    if (r->n == 0)
        pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->lock);
}

static size_t registry_count(struct registry *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void registry_shutdown_all(struct registry *r, int how)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        shutdown(r->fds[i], how);
    pthread_mutex_unlock(&r->lock);
}

/* Wait until no connection is left, at most ms (-1: forever). Returns the
 * number still running. */
static size_t registry_wait_empty(struct registry *r, int ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->lock);
    while (r->n > 0) {
        int e = ms < 0 ? pthread_cond_wait(&r->idle, &r->lock)
                       : pthread_cond_timedwait(&r->idle, &r->lock, &deadline);
        if (e == ETIMEDOUT)
            break;
    }
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void *serve_thread(void *arg)
{
    struct job *j = arg;
    /* Unregister before the descriptor is closed, so stop can never shut
     * down a number that has been reused. */
    iop__serve_blocking(j->s, j->fd, &j->peer, j->peerlen);
    registry_remove(j->reg, j->fd);
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
    struct registry reg = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .idle = PTHREAD_COND_INITIALIZER,
    };
    int served = 0;
    while (!(s->cfg.once && served)) {
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
        iop__accept_ok(s);
        if (s->cfg.max_conns && registry_count(&reg) >= s->cfg.max_conns) {
            iop_report(s, IOP_LOG_INFO, "refusing a connection: %u clients "
                       "already (--max-conns)", s->cfg.max_conns);
            close(j->fd);
            free(j);
            continue;
        }
        int err = registry_add(&reg, j->fd);
        if (err == 0) {
            err = start_thread(j);
            if (err != 0)
                registry_remove(&reg, j->fd);
        }
        if (err != 0) {
            iop_report(s, IOP_LOG_ERROR, "cannot start a thread: %s; closing "
                       "the new connection", iop_strerror(err));
            close(j->fd);
            free(j);
            continue;
        }
        served = 1;
    }
    if (iop__stopping(s)) {
        registry_shutdown_all(&reg, SHUT_RD);
        size_t left = registry_wait_empty(&reg, s->cfg.drain_ms);
        if (left > 0) {
            /* Peers that do not read: give up on their output, which
             * makes every blocked send() fail, so their threads end. */
            iop_report(s, IOP_LOG_INFO, "%zu connections still busy after "
                       "%d ms; closing them", left, s->cfg.drain_ms);
            registry_shutdown_all(&reg, SHUT_RDWR);
        }
    }
    registry_wait_empty(&reg, -1);
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
