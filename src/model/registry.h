/*
 * The live connections of a model whose threads block in recv() and send()
 * (thread, pool): their descriptors, so that a stop can reach them with
 * shutdown(), and a condition to wait on until the last one is gone.
 *
 * A descriptor is added before its thread may close it and removed before
 * it is closed, so a shutdown() never hits a number that has been reused.
 */
#ifndef IOP_REGISTRY_H
#define IOP_REGISTRY_H

#include <pthread.h>
#include <stddef.h>

struct iop__registry {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when the last descriptor leaves */
    int *fds;
    size_t n, cap;
};

/* Returns 0 or a negative errno. */
int iop__registry_init(struct iop__registry *r);
void iop__registry_destroy(struct iop__registry *r);
/* Returns 0 or -ENOMEM. */
int iop__registry_add(struct iop__registry *r, int fd);
void iop__registry_remove(struct iop__registry *r, int fd);
size_t iop__registry_count(struct iop__registry *r);
/* shutdown(fd, how) on every descriptor registered. */
void iop__registry_shutdown_all(struct iop__registry *r, int how);
/* Wait until none is left, at most ms (-1: no limit). Returns the number
 * still registered. */
size_t iop__registry_wait_empty(struct iop__registry *r, int ms);

#endif
