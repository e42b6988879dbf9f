/*
 * The event loop: readiness of descriptors, timers, a cross-thread
 * wake-up, and signals delivered as events. One loop per thread; nothing
 * here is thread-safe except iop__loop_wake() and iop__loop_stop().
 *
 * Each readiness mechanism is a backend (select.c, poll.c, epoll.c,
 * kqueue.c) implementing the five functions of struct iop__backend, in
 * the manner of Redis' ae. The loop keeps, per descriptor, the interest
 * mask and the callback; a backend only translates masks into its own
 * calls and reports what fired.
 *
 * Readiness is level-triggered everywhere: a descriptor that still has
 * data is reported again on the next iteration, which is what lets a
 * connection stop reading after a budget and let others run.
 */
#ifndef IOP_LOOP_H
#define IOP_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct iop__loop iop__loop;

enum { IOP_EV_READ = 1u, IOP_EV_WRITE = 2u };

typedef void iop__io_fn(iop__loop *loop, int fd, unsigned events, void *arg);
typedef void iop__timer_fn(iop__loop *loop, void *arg);

struct iop__backend {
    const char *name;
    /* Set up l->backend for descriptors below l->setsize. */
    int (*create)(iop__loop *l);
    void (*destroy)(iop__loop *l);
    /* l->setsize is about to grow to setsize. */
    int (*resize)(iop__loop *l, int setsize);
    /* Change fd's interest from old_mask to new_mask (either may be 0). */
    int (*set)(iop__loop *l, int fd, unsigned old_mask, unsigned new_mask);
    /* Wait at most timeout_ms (-1: no limit); record what fired with
     * iop__loop_fired(). Returns 0 or a negative errno (EINTR is 0). */
    int (*poll)(iop__loop *l, int timeout_ms);
    int fd_limit; /* descriptors must be below this (select: FD_SETSIZE) */
};

/* A timer, embedded in its owner's struct: starting one never allocates,
 * except to grow the heap. */
struct iop__timer {
    uint64_t when;  /* iop__now_ms() deadline */
    size_t slot;    /* index in the heap + 1; 0 when not running */
    iop__timer_fn *fn;
    void *arg;
};

/* Create a loop on the backend called `name` (NULL: the best available).
 * -ENOENT if no such backend is compiled in. */
int iop__loop_create(iop__loop **out, const char *name);
void iop__loop_destroy(iop__loop *l);
const char *iop__loop_backend(const iop__loop *l);

/* Watch fd for exactly `mask` (0 stops watching it) and call fn. Returns 0,
 * -EMFILE if fd is beyond what the backend can watch, or -errno. */
int iop__loop_io(iop__loop *l, int fd, unsigned mask, iop__io_fn *fn, void *arg);
unsigned iop__loop_mask(const iop__loop *l, int fd);

void iop__timer_start(iop__loop *l, struct iop__timer *t, uint64_t after_ms,
                      iop__timer_fn *fn, void *arg);
void iop__timer_stop(iop__loop *l, struct iop__timer *t);
static inline int iop__timer_active(const struct iop__timer *t) { return t->slot != 0; }

/* Run until iop__loop_stop(). Returns 0 or a negative errno. */
int iop__loop_run(iop__loop *l);
/* One iteration: wait at most timeout_ms (-1: until the next timer or
 * event), dispatch. Returns the number of events fired or a negative errno. */
int iop__loop_once(iop__loop *l, int timeout_ms);
/* Make iop__loop_run() return after the current callback. Callable from
 * another thread too; follow it with iop__loop_wake() there, since a loop
 * blocked with nothing to wait for notices the stop only once woken. */
void iop__loop_stop(iop__loop *l);
/* Make a loop blocked in poll return; callable from any thread, and from
 * a signal handler. */
void iop__loop_wake(iop__loop *l);
/* The time this iteration started, in iop__now_ms() units. */
uint64_t iop__loop_now(const iop__loop *l);

/* Deliver signal `sig` to fn on this loop's thread. One loop per signal;
 * the handler only writes the signal number to the loop's wake pipe. */
int iop__loop_signal(iop__loop *l, int sig, iop__timer_fn *fn, void *arg);

/* For backends. */
void iop__loop_fired(iop__loop *l, int fd, unsigned events);
void **iop__loop_backend_state(iop__loop *l);
int iop__loop_setsize(const iop__loop *l);

/* The backends compiled in, best first, NULL-terminated. */
const struct iop__backend *const *iop__backends(void);

#endif
