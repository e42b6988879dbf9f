/*
 * pool: N threads started in advance, each serving one client at a time
 * with blocking calls (Stevens, UNP vol. 1, ch. 30: the "prethreaded
 * server"). Threads are created once, not per client as in the thread
 * model, and share the process's memory, so a service with shared state
 * runs here (behind its own locks).
 *
 * Stevens gives two designs:
 *  (a) every thread calls accept() itself, serialized by a mutex (30.11):
 *      no hand-off at all, but a thread waiting for a client sits in
 *      accept() (or, here, in a poll() that must also see the stop pipe),
 *      the mutex is taken once per connection by whoever is free, and
 *      nothing bounds the clients but the N threads and the backlog;
 *  (b) the main thread accepts and hands each descriptor to the pool
 *      through a queue (30.12): one extra hand-off (a mutex and a
 *      condition variable) per connection, which Stevens measured a
 *      little slower than (a).
 * This is (b). The main thread is the only one that waits on the listener
 * and the stop pipe, so the workers need no poll() at all; the queue is
 * bounded, so a flood of clients waits in the kernel's listen backlog
 * rather than in our memory; and --max-conns can mean what it means
 * elsewhere: connections accepted and not yet closed, queued or in
 * service. Beyond it a new connection is accepted and closed at once.
 *
 * N (-m pool:N or -w N): by default 4 per core and at least 16. N is the
 * number of clients served at once: a client beyond N waits, queued, until
 * a thread is free, so N must cover the clients expected to be connected
 * together, more than the cores (threads mostly wait on the network). A
 * thread costs its stack (THREAD_STACK, 256 KiB of address space, most
 * never touched), so 16 idle threads cost next to nothing.
 *
 * The queue holds up to max(QUEUE_MIN, 4 N) descriptors, or --max-conns if
 * given (its memory grows with use). When it is full the main thread stops
 * accepting until a worker takes one (a pipe wakes it, only when it is
 * actually waiting).
 *
 * Stop: the main thread stops accepting and shuts the reading side of
 * every connection, queued or in service (the registry of
 * src/model/registry.c, shared with the thread model), so each recv()
 * returns end-of-stream and what was received is answered. The workers
 * serve what is still queued the same way. After drain_ms the writing
 * sides are shut too, so a thread blocked sending to a peer that does not
 * read gets EPIPE. When no connection is left, workers waiting on the
 * queue are woken by a condition-variable broadcast and exit; the main
 * thread joins them.
 *
 * --once: the first client only; the main thread stops accepting after
 * it, waits until it has been served, then stops the workers.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
#include "model/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MIN 16
#define QUEUE_MIN 64
#define THREAD_STACK (256 * 1024)

struct item {
    int fd;
    socklen_t peerlen;
    struct sockaddr_storage peer;
};

struct pool {
    iop_server *s;
    struct iop__registry reg; /* every connection accepted and not closed */
    pthread_mutex_t lock;     /* the queue and the flags below */
    pthread_cond_t nonempty;
    struct item *q;           /* a ring of `alloc` items, grown up to cap */
    size_t head, count, alloc, cap;
    int closing;              /* workers exit once the queue is empty */
    int acceptor_waiting;     /* the main thread waits for a free slot */
    int wake[2];              /* a worker wakes it through this pipe */
};

static unsigned default_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cores > 0 ? (unsigned)cores * 4 : POOL_MIN;
    return n < POOL_MIN ? POOL_MIN : n;
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->count == 0 && !p->closing)
            pthread_cond_wait(&p->nonempty, &p->lock);
        if (p->count == 0)
            break;
        struct item it = p->q[p->head];
        p->head = (p->head + 1) % p->alloc;
        p->count--;
        if (p->acceptor_waiting) {
            p->acceptor_waiting = 0;
            ssize_t n = write(p->wake[1], "w", 1);
            (void)n; /* non-blocking; a full pipe is a pending wake-up */
        }
        pthread_mutex_unlock(&p->lock);
        iop__serve_blocking(p->s, it.fd, &it.peer, it.peerlen);
        /* Unregistered before it is closed: a stop never shuts down a
         * number that has been reused. */
        iop__registry_remove(&p->reg, it.fd);
        close(it.fd);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Wait until the queue has room. Returns 0, or -ECANCELED on stop. */
static int wait_for_room(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->count == p->cap) {
        p->acceptor_waiting = 1;
        pthread_mutex_unlock(&p->lock);
        int r = iop__wait_fd(p->s, p->wake[0], POLLIN, -1);
        char drain[16];
        while (read(p->wake[0], drain, sizeof drain) > 0)
            ;
        if (r == -ECANCELED)
            return r;
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

static int enqueue(struct pool *p, const struct item *it)
{
    pthread_mutex_lock(&p->lock);
    if (p->count == p->alloc) { /* below cap: wait_for_room() saw to it */
        size_t n = p->alloc ? p->alloc * 2 : QUEUE_MIN;
        if (n > p->cap)
            n = p->cap;
        struct item *q = malloc(n * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&p->lock);
            return -ENOMEM;
        }
        for (size_t i = 0; i < p->count; i++)
            q[i] = p->q[(p->head + i) % p->alloc];
        free(p->q);
        p->q = q;
        p->head = 0;
        p->alloc = n;
    }
    p->q[(p->head + p->count) % p->alloc] = *it;
    p->count++;
    pthread_cond_signal(&p->nonempty);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Accept until stopped (or the first client, with --once). */
static void accept_loop(struct pool *p)
{
    iop_server *s = p->s;
    int served = 0;
    while (!(s->cfg.once && served)) {
        if (wait_for_room(p) != 0)
            return;
        struct item it;
        it.fd = iop__accept(s, &it.peer, &it.peerlen);
        if (it.fd == -ECANCELED)
            return;
        if (it.fd < 0) {
            iop__accept_failed(s, it.fd);
            continue;
        }
        if (!iop__acceptor_take(&s->acceptor, it.fd, (unsigned)iop__registry_count(&p->reg)))
            continue; /* refused (and closed) */
        int r = iop__registry_add(&p->reg, it.fd);
        if (r == 0 && (r = enqueue(p, &it)) != 0)
            iop__registry_remove(&p->reg, it.fd);
        if (r != 0) {
            iop_report(s, IOP_LOG_ERROR, "out of memory; closing the new connection");
            close(it.fd);
            continue;
        }
        served = 1;
    }
}

/* How many threads started (the first failure reported, fewer serve), or
 * -errno if none could: the server cannot serve (iop__fail()). */
static int start_workers(struct pool *p, pthread_t *t, unsigned n)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    unsigned started = 0;
    for (; started < n; started++) {
        int e = pthread_create(&t[started], &attr, worker, p);
        if (e != 0 && started == 0) {
            pthread_attr_destroy(&attr);
            return iop__fail(p->s, -e, "cannot start thread 1 of %u: %s", n, strerror(e));
        }
        if (e != 0) {
            iop_report(p->s, IOP_LOG_ERROR, "cannot start thread %u of %u: %s; "
                       "serving with fewer", started + 1, n, strerror(e));
            break;
        }
    }
    pthread_attr_destroy(&attr);
    return (int)started;
}

static int run_pool(iop_server *s)
{
    unsigned n = s->cfg.workers ? s->cfg.workers : default_threads();
    struct pool p = {.s = s, .wake = {-1, -1}};
    p.cap = s->cfg.max_conns ? s->cfg.max_conns
          : (size_t)n * 4 > QUEUE_MIN ? (size_t)n * 4 : QUEUE_MIN;
    int r = iop__registry_init(&p.reg);
    if (r != 0)
        return r;
    pthread_t *threads = calloc(n, sizeof *threads);
    if (!threads) {
        r = -ENOMEM;
        goto out;
    }
    if (pipe2(p.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        r = -errno;
        goto out;
    }
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.nonempty, NULL);
    int started = start_workers(&p, threads, n);
    if (started < 0) {
        r = started; /* the reason in words: iop_server_failure() */
        started = 0;
    } else {
        accept_loop(&p);
        /* --once: wait for that client, unless a stop comes first. */
        while (!iop__stopping(s) && iop__registry_wait_empty(&p.reg, 50) > 0)
            ;
        if (iop__stopping(s)) {
            iop__registry_shutdown_all(&p.reg, SHUT_RD);
            size_t left = iop__registry_wait_empty(&p.reg, s->cfg.drain_ms);
            if (left > 0) {
                iop_report(s, IOP_LOG_INFO, "%zu connections still busy after "
                           "%d ms; closing them", left, s->cfg.drain_ms);
                iop__registry_shutdown_all(&p.reg, SHUT_RDWR);
            }
        }
        iop__registry_wait_empty(&p.reg, -1);
    }
    pthread_mutex_lock(&p.lock);
    p.closing = 1;
    pthread_cond_broadcast(&p.nonempty);
    pthread_mutex_unlock(&p.lock);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.nonempty);
out:
    for (int i = 0; i < 2; i++)
        if (p.wake[i] >= 0)
            close(p.wake[i]);
    free(p.q);
    free(threads);
    iop__registry_destroy(&p.reg);
    return r;
}

const struct iop__model iop__model_pool = {
    .info = {
        .name = "pool",
        .summary = "N threads started in advance, fed by the accepting thread (-w N)",
        .datagram = 0,
        .shared_state = 1,
    },
    .run = run_pool,
};
