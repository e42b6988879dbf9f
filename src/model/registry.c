/*
 * The registry of live connections: see registry.h.
 */
#define _GNU_SOURCE
#include "registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int iop__registry_init(struct iop__registry *r)
{
    memset(r, 0, sizeof *r);
    pthread_condattr_t ca;
    int e = pthread_condattr_init(&ca);
    if (e != 0)
        return -e;
    /* Deadlines on the monotonic clock: a clock step cannot stretch a drain. */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    e = pthread_cond_init(&r->idle, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0)
        return -e;
    e = pthread_mutex_init(&r->lock, NULL);
    if (e != 0) {
        pthread_cond_destroy(&r->idle);
        return -e;
    }
    return 0;
}

void iop__registry_destroy(struct iop__registry *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->idle);
    free(r->fds);
    r->fds = NULL;
    r->n = r->cap = 0;
}

int iop__registry_add(struct iop__registry *r, int fd)
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

void iop__registry_remove(struct iop__registry *r, int fd)
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

size_t iop__registry_count(struct iop__registry *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

void iop__registry_shutdown_all(struct iop__registry *r, int how)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++)
        shutdown(r->fds[i], how);
    pthread_mutex_unlock(&r->lock);
}

size_t iop__registry_wait_empty(struct iop__registry *r, int ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (ms > 0) {
        deadline.tv_sec += ms / 1000;
        deadline.tv_nsec += (long)(ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
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
