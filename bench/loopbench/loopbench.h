/*
 * The event-loop micro-benchmark, with the method of libevent's
 * test/bench.c (Provos; chained by Libenzi): N socket pairs, A of them
 * active; each read callback reads one byte and writes one to the next
 * pair, until W writes have been made. The time of the loop iterations
 * that carry the chain is measured, 25 runs. Before each run every read
 * event is deleted and added again, as bench.c does (not timed).
 *
 * One driver (loopbench.c) and one small adapter per library: ioplex's
 * own loop (each backend), libevent and libev from Debian's packages.
 */
#ifndef LOOPBENCH_H
#define LOOPBENCH_H

struct lb_adapter {
    const char *name;
    /* Set up; backend may be NULL (the library's default). */
    int (*init)(const char *backend);
    /* (Re)register a persistent read event for every pair's read end. */
    int (*add_all)(int n, const int *read_fds);
    /* One non-blocking loop iteration. */
    void (*once)(void);
};

/* The adapter's read callback calls this with the descriptor and the
 * pair's index: it reads a byte and continues the chain. */
void lb_on_read(int fd, int idx);

int lb_main(int argc, char **argv, const struct lb_adapter *a);

#endif
