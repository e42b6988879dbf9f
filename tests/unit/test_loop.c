/*
 * The event loop (src/loop/), run once per backend compiled in
 * (iop__backends()): timers fire in deadline order and only while
 * running; descriptors are reported readable / writable as asked, and no
 * more once interest is removed; a callback may close a descriptor that
 * fired in the same batch; iop__loop_wake() and signals reach a blocked
 * loop; select refuses descriptors >= FD_SETSIZE; the descriptor table
 * grows past its initial size.
 *
 * Every test arms alarm(): a loop that never returns kills the test
 * process (SIGALRM) rather than hang the suite. Every loop also has a
 * guard timer where the test expects it to stop by itself.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"

uint64_t iop__now_ms(void); /* src/server.c (internal.h) */

#define TEST_ALARM_S 30
#define GUARD_MS 5000

/* ---- fixture: one loop on the backend under test --------------------------- */

struct fixture {
    const struct iop__backend *be;
    iop__loop *l;
};

static int setup(void **state)
{
    struct fixture *f = *state;
    alarm(TEST_ALARM_S);
    f->l = NULL;
    return iop__loop_create(&f->l, f->be->name) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    iop__loop_destroy(f->l);
    f->l = NULL;
    alarm(0);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* The guard: a loop that should have stopped by itself is stopped, and the
 * test notices the guard fired. */
static int guard_fired;

static void on_guard(iop__loop *l, void *arg)
{
    (void)arg;
    guard_fired = 1;
    iop__loop_stop(l);
}

static void run_guarded(iop__loop *l, struct iop__timer *guard, int ms)
{
    guard_fired = 0;
    memset(guard, 0, sizeof *guard);
    iop__timer_start(l, guard, (uint64_t)ms, on_guard, NULL);
    assert_int_equal(iop__loop_run(l), 0);
    iop__timer_stop(l, guard);
}

static void stop_loop(iop__loop *l, void *arg)
{
    (void)arg;
    iop__loop_stop(l);
}

/* Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit. */
static rlim_t raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 0;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
        getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur;
}

/* ---- timers ------------------------------------------------------------------ */

struct rec_timer {
    struct iop__timer t;
    int id;
    uint64_t fired_at;
    uint64_t when; /* the deadline it fired for */
    int fires;
};

static int order[2048];
static int norder;
static int expect_fires; /* stop the loop after this many */

static void on_rec(iop__loop *l, void *arg)
{
    struct rec_timer *r = arg;
    r->fires++;
    r->fired_at = iop__now_ms();
    r->when = r->t.when;
    if (norder < (int)(sizeof order / sizeof order[0]))
        order[norder++] = r->id;
    if (norder == expect_fires)
        iop__loop_stop(l);
}

/* Timers started out of order fire in deadline order, each once, never
 * before its deadline. */
static void timers_in_order(void **state)
{
    struct fixture *f = *state;
    static const int after[] = {40, 10, 30, 0, 20, 50};
    enum { N = sizeof after / sizeof after[0] };
    struct rec_timer r[N];
    memset(r, 0, sizeof r);
    norder = 0;
    expect_fires = N;
    uint64_t t0 = iop__now_ms();
    for (int i = 0; i < N; i++) {
        r[i].id = i;
        iop__timer_start(f->l, &r[i].t, (uint64_t)after[i], on_rec, &r[i]);
        assert_true(iop__timer_active(&r[i].t));
    }
    uint64_t setup_ms = iop__now_ms() - t0;
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(norder, N);
    /* Deadline order. The deadlines are 10 ms apart as long as starting
     * the six timers takes a few ms; a slower start (TSan under load) may
     * reorder the deadlines themselves: then only their order is checked. */
    static const int want[] = {3, 1, 4, 2, 0, 5};
    for (int i = 0; i < N; i++) {
        if (setup_ms < 5)
            assert_int_equal(order[i], want[i]);
        if (i > 0)
            assert_true(r[order[i - 1]].when <= r[order[i]].when);
        assert_int_equal(r[i].fires, 1);
        assert_false(iop__timer_active(&r[i].t));
        assert_true(r[i].fired_at >= t0 + (uint64_t)after[i]);
        assert_true(r[i].fired_at >= r[i].when);
    }
}

/* A stopped timer never fires, whether stopped before the loop runs or
 * by another timer's callback just before its own deadline. */
static struct rec_timer *victim;

static void on_stopper(iop__loop *l, void *arg)
{
    on_rec(l, arg);
    iop__timer_stop(l, &victim->t);
}

static void stopped_timer_never_fires(void **state)
{
    struct fixture *f = *state;
    struct rec_timer a = {.id = 0}, b = {.id = 1}, c = {.id = 2}, d = {.id = 3};
    norder = 0;
    expect_fires = -1; /* the end timer stops the loop */
    iop__timer_start(f->l, &a.t, 10, on_rec, &a);
    iop__timer_start(f->l, &b.t, 20, on_rec, &b);
    iop__timer_stop(f->l, &a.t);
    assert_false(iop__timer_active(&a.t));
    iop__timer_stop(f->l, &a.t); /* stopping twice is harmless */
    /* c stops d, due 1 ms later. */
    victim = &d;
    iop__timer_start(f->l, &c.t, 30, on_stopper, &c);
    iop__timer_start(f->l, &d.t, 31, on_rec, &d);
    struct iop__timer end = {0};
    iop__timer_start(f->l, &end, 150, stop_loop, NULL);
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(norder, 2);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(a.fires, 0);
    assert_int_equal(d.fires, 0);
    assert_false(iop__timer_active(&d.t));
}

/* Restarting a running timer moves its deadline, later or earlier; it
 * still fires once. A timer restarted from its own callback fires again. */
static int periodic_left;

static void on_periodic(iop__loop *l, void *arg)
{
    struct rec_timer *r = arg;
    on_rec(l, arg);
    if (--periodic_left > 0)
        iop__timer_start(l, &r->t, 5, on_periodic, r);
}

static void restart_moves_timer(void **state)
{
    struct fixture *f = *state;
    struct rec_timer a = {.id = 0}, b = {.id = 1}, c = {.id = 2}, p = {.id = 3};
    norder = 0;
    expect_fires = 6;
    uint64_t t0 = iop__now_ms();
    iop__timer_start(f->l, &a.t, 10, on_rec, &a);
    iop__timer_start(f->l, &b.t, 30, on_rec, &b);
    iop__timer_start(f->l, &c.t, 1000, on_rec, &c);
    iop__timer_start(f->l, &a.t, 60, on_rec, &a);  /* later: after b */
    iop__timer_start(f->l, &c.t, 15, on_rec, &c);  /* earlier: first */
    periodic_left = 3;
    iop__timer_start(f->l, &p.t, 70, on_periodic, &p); /* 70, 75, 80 */
    uint64_t setup_ms = iop__now_ms() - t0;
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(norder, 6);
    static const int want[] = {2, 1, 0, 3, 3, 3};
    if (setup_ms < 5) /* else the deadlines themselves may be out of order */
        for (int i = 0; i < 6; i++)
            assert_int_equal(order[i], want[i]);
    assert_int_equal(a.fires, 1);
    assert_int_equal(c.fires, 1);
    assert_int_equal(p.fires, 3);
    assert_true(a.fired_at >= t0 + 60);
    assert_true(c.fired_at < t0 + 1000);
}

/* 1000 timers with random deadlines; a random third stopped before the
 * loop runs, and each callback may stop another, not yet fired. Exactly
 * the survivors fire, once each, in deadline order, none early. */
#define RANDOM_TIMERS 1000

struct rnd_timer {
    struct iop__timer t;
    int id;
    int stopped; /* stopped before it could fire */
    int fires;
    uint64_t when;
};

static struct rnd_timer rnd[RANDOM_TIMERS];
static int rnd_order[RANDOM_TIMERS];
static int rnd_nfired, rnd_survivors, rnd_early;
static unsigned rnd_seed;

static unsigned next_rand(void)
{
    rnd_seed ^= rnd_seed << 13;
    rnd_seed ^= rnd_seed >> 17;
    rnd_seed ^= rnd_seed << 5;
    return rnd_seed;
}

static void on_rnd(iop__loop *l, void *arg)
{
    struct rnd_timer *r = arg;
    r->fires++;
    if (iop__now_ms() < r->when)
        rnd_early++;
    if (rnd_nfired < RANDOM_TIMERS)
        rnd_order[rnd_nfired++] = r->id;
    /* One time in four, stop another timer that has not fired. */
    if (next_rand() % 4 == 0) {
        struct rnd_timer *v = &rnd[next_rand() % RANDOM_TIMERS];
        if (iop__timer_active(&v->t)) {
            iop__timer_stop(l, &v->t);
            v->stopped = 1;
            rnd_survivors--;
        }
    }
    if (rnd_nfired == rnd_survivors)
        iop__loop_stop(l);
}

static void random_timers(void **state)
{
    struct fixture *f = *state;
    const char *env = getenv("IOPLEX_TEST_SEED");
    rnd_seed = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL);
    if (rnd_seed == 0)
        rnd_seed = 0x9e3779b9u;
    print_message("random_timers: seed %u (IOPLEX_TEST_SEED replays it)\n", rnd_seed);
    memset(rnd, 0, sizeof rnd);
    rnd_nfired = 0;
    rnd_early = 0;
    for (int i = 0; i < RANDOM_TIMERS; i++) {
        rnd[i].id = i;
        iop__timer_start(f->l, &rnd[i].t, next_rand() % 200, on_rnd, &rnd[i]);
        rnd[i].when = rnd[i].t.when;
        /* Restart some at once: the heap must keep only the new deadline. */
        if (next_rand() % 8 == 0) {
            iop__timer_start(f->l, &rnd[i].t, next_rand() % 200, on_rnd, &rnd[i]);
            rnd[i].when = rnd[i].t.when;
        }
    }
    rnd_survivors = RANDOM_TIMERS;
    for (int i = 0; i < RANDOM_TIMERS; i++)
        if (next_rand() % 3 == 0) {
            struct rnd_timer *v = &rnd[next_rand() % RANDOM_TIMERS];
            if (iop__timer_active(&v->t)) {
                iop__timer_stop(f->l, &v->t);
                v->stopped = 1;
                rnd_survivors--;
            }
        }
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(rnd_nfired, rnd_survivors);
    assert_int_equal(rnd_early, 0);
    for (int i = 0; i < RANDOM_TIMERS; i++) {
        assert_int_equal(rnd[i].fires, rnd[i].stopped ? 0 : 1);
        assert_false(iop__timer_active(&rnd[i].t));
    }
    for (int i = 1; i < rnd_nfired; i++)
        assert_true(rnd[rnd_order[i - 1]].when <= rnd[rnd_order[i]].when);
}

/* ---- descriptors ------------------------------------------------------------- */

struct io_rec {
    int calls;
    unsigned events;     /* of the last call */
    unsigned all_events; /* or-ed over all calls */
    int stop_after;      /* stop the loop after this many calls (0: never) */
    int unwatch_after;   /* remove interest after this many calls (0: never) */
    int read_it;         /* consume one byte per call */
};

static void on_io_rec(iop__loop *l, int fd, unsigned events, void *arg)
{
    struct io_rec *r = arg;
    r->calls++;
    r->events = events;
    r->all_events |= events;
    if (r->read_it) {
        char c;
        ssize_t n = read(fd, &c, 1);
        (void)n;
    }
    if (r->unwatch_after && r->calls == r->unwatch_after)
        assert_int_equal(iop__loop_io(l, fd, 0, NULL, NULL), 0);
    if (r->stop_after && r->calls == r->stop_after)
        iop__loop_stop(l);
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

/* Readable: called with IOP_EV_READ once data is there, not before. */
static void fd_readable(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    make_pair(sv);
    struct io_rec r = {.stop_after = 1, .read_it = 1};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_READ, on_io_rec, &r), 0);
    assert_int_equal(iop__loop_mask(f->l, sv[0]), IOP_EV_READ);
    /* Nothing to read: only the guard ends the loop. */
    struct iop__timer guard;
    run_guarded(f->l, &guard, 50);
    assert_true(guard_fired);
    assert_int_equal(r.calls, 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.events, IOP_EV_READ);
    assert_int_equal(iop__loop_io(f->l, sv[0], 0, NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Writable: an empty socket is writable at once. */
static void fd_writable(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    make_pair(sv);
    struct io_rec r = {.stop_after = 1};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_WRITE, on_io_rec, &r), 0);
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.events, IOP_EV_WRITE);
    assert_int_equal(iop__loop_io(f->l, sv[0], 0, NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Both: readable and writable together come in one call with both bits;
 * a pipe's write end asked for both reports only what it can be. */
static void fd_both(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[1], "x", 1), 1);
    struct io_rec r = {.stop_after = 1, .read_it = 1};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_READ | IOP_EV_WRITE, on_io_rec, &r), 0);
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.events, IOP_EV_READ | IOP_EV_WRITE);
    assert_int_equal(iop__loop_io(f->l, sv[0], 0, NULL, NULL), 0);

    /* Interest in writing only, on a socket with data to read: the
     * readable state is not reported. */
    assert_int_equal(write(sv[1], "y", 1), 1);
    struct io_rec w = {.stop_after = 3};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_WRITE, on_io_rec, &w), 0);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(w.all_events, IOP_EV_WRITE);
    /* And the reverse, switched in place. */
    struct io_rec rd = {.stop_after = 3};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_READ, on_io_rec, &rd), 0);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(rd.all_events, IOP_EV_READ);
    assert_int_equal(iop__loop_io(f->l, sv[0], 0, NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);

    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    struct io_rec pw = {.stop_after = 2};
    assert_int_equal(iop__loop_io(f->l, p[1], IOP_EV_READ | IOP_EV_WRITE, on_io_rec, &pw), 0);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(pw.all_events, IOP_EV_WRITE);
    assert_int_equal(iop__loop_io(f->l, p[1], 0, NULL, NULL), 0);
    close(p[0]);
    close(p[1]);
}

/* Level-triggered until interest is removed: data left unread is reported
 * on every iteration; after iop__loop_io(fd, 0) never again, even though
 * it is still readable. */
static void unwatch_stops_callbacks(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[1], "x", 1), 1);
    struct io_rec r = {.unwatch_after = 3};
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_READ, on_io_rec, &r), 0);
    struct iop__timer guard;
    run_guarded(f->l, &guard, 100);
    assert_true(guard_fired); /* ran the whole 100 ms */
    assert_int_equal(r.calls, 3);
    assert_int_equal(iop__loop_mask(f->l, sv[0]), 0);
    /* More data does not bring it back. */
    assert_int_equal(write(sv[1], "y", 1), 1);
    run_guarded(f->l, &guard, 50);
    assert_int_equal(r.calls, 3);
    /* Watching again does. */
    r.unwatch_after = 0;
    r.stop_after = 4;
    assert_int_equal(iop__loop_io(f->l, sv[0], IOP_EV_READ, on_io_rec, &r), 0);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(r.calls, 4);
    assert_int_equal(iop__loop_io(f->l, sv[0], 0, NULL, NULL), 0);
    close(sv[0]);
    close(sv[1]);
}

/* Two descriptors readable in the same batch; whichever callback runs
 * first unwatches and closes the other. The closed one's callback is not
 * called, in that batch or later. */
struct closer {
    int *fds;       /* the two watched descriptors */
    int calls[2];
    int closed;     /* index of the one closed, or -1 */
};

static void on_closer(iop__loop *l, int fd, unsigned events, void *arg)
{
    (void)events;
    struct closer *c = arg;
    int me = fd == c->fds[0] ? 0 : 1;
    c->calls[me]++;
    if (c->closed < 0) {
        int other = 1 - me;
        assert_int_equal(iop__loop_io(l, c->fds[other], 0, NULL, NULL), 0);
        close(c->fds[other]);
        c->closed = other;
    }
    char buf[8];
    ssize_t n = read(fd, buf, sizeof buf);
    (void)n;
    assert_int_equal(iop__loop_io(l, fd, 0, NULL, NULL), 0);
}

static void close_other_in_batch(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < 20; round++) {
        int a[2], b[2];
        make_pair(a);
        make_pair(b);
        assert_int_equal(write(a[1], "x", 1), 1);
        assert_int_equal(write(b[1], "x", 1), 1);
        int fds[2] = {a[0], b[0]};
        struct closer c = {.fds = fds, .closed = -1};
        /* Alternate the order of registration so either may come first. */
        for (int i = 0; i < 2; i++) {
            int k = (round & 1) ? 1 - i : i;
            assert_int_equal(iop__loop_io(f->l, fds[k], IOP_EV_READ, on_closer, &c), 0);
        }
        struct iop__timer guard;
        run_guarded(f->l, &guard, 30);
        assert_true(c.closed == 0 || c.closed == 1);
        assert_int_equal(c.calls[1 - c.closed], 1);
        assert_int_equal(c.calls[c.closed], 0);
        close(fds[1 - c.closed]);
        close(a[1]);
        close(b[1]);
    }
}

/* ---- wake-ups and signals --------------------------------------------------- */

struct waker {
    iop__loop *l;
    atomic_int returned;   /* set by the loop's thread after run() */
    atomic_int early;      /* the loop returned before the wake-up */
    int delay_ms;
};

static void *waker_main(void *arg)
{
    struct waker *w = arg;
    sleep_ms(w->delay_ms);
    /* Stop alone does not end a loop blocked with nothing to wait for... */
    iop__loop_stop(w->l);
    sleep_ms(w->delay_ms);
    if (atomic_load(&w->returned))
        atomic_store(&w->early, 1);
    /* ...the wake-up does. */
    iop__loop_wake(w->l);
    return NULL;
}

/* A loop blocked with no timer and nothing readable returns when another
 * thread stops it and wakes it, and not before the wake-up. */
static void wake_from_thread(void **state)
{
    struct fixture *f = *state;
    for (int round = 0; round < 3; round++) {
        struct waker w = {.l = f->l, .delay_ms = 100};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, waker_main, &w), 0);
        /* No guard: if the wake-up did not work this would block, and
         * ctest's TIMEOUT would fail the test. No bound on the time
         * taken: a loaded machine may delay any thread. */
        int r = iop__loop_run(f->l);
        atomic_store(&w.returned, 1);
        pthread_join(t, NULL);
        assert_int_equal(r, 0);
        assert_false(atomic_load(&w.early)); /* not before the wake-up */
    }
}

static pthread_t loop_thread;
static atomic_int sig_calls, sig_wrong_thread;

static void on_sig(iop__loop *l, void *arg)
{
    int *stop_at = arg;
    if (!pthread_equal(pthread_self(), loop_thread))
        atomic_fetch_add(&sig_wrong_thread, 1);
    if (atomic_fetch_add(&sig_calls, 1) + 1 >= *stop_at)
        iop__loop_stop(l);
}

static void raise_usr1(iop__loop *l, void *arg)
{
    (void)l, (void)arg;
    raise(SIGUSR1);
}

struct killer {
    int sig, delay_ms;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;
    /* Keep the signal off this thread, so the kernel delivers it to the
     * loop's: the handler then interrupts the loop's own wait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, k->sig);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sleep_ms(k->delay_ms);
    kill(getpid(), k->sig);
    return NULL;
}

static void *killer_unblocked_main(void *arg)
{
    struct killer *k = arg;
    sigset_t set; /* a new thread inherits the loop thread's mask */
    sigemptyset(&set);
    sigaddset(&set, k->sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    sleep_ms(k->delay_ms);
    /* To this very thread: the handler runs here, not on the loop's, and
     * the callback must still run on the loop's thread. */
    pthread_kill(pthread_self(), k->sig);
    return NULL;
}

/* raise() on the loop's thread (from a timer), kill(getpid()) from
 * another thread while the loop is blocked without timers, and a signal
 * handled on another thread: each reaches the callback, on the loop's
 * thread. */
static void signal_delivered(void **state)
{
    struct fixture *f = *state;
    loop_thread = pthread_self();
    atomic_store(&sig_calls, 0);
    atomic_store(&sig_wrong_thread, 0);
    int stop_at = 1;
    assert_int_equal(iop__loop_signal(f->l, SIGUSR1, on_sig, &stop_at), 0);
    assert_int_equal(iop__loop_signal(f->l, SIGUSR2, on_sig, &stop_at), 0);

    struct iop__timer t = {0}, guard;
    iop__timer_start(f->l, &t, 10, raise_usr1, NULL);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(atomic_load(&sig_calls), 1);

    struct killer k = {SIGUSR2, 50};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, killer_main, &k), 0);
    stop_at = 2;
    int r = iop__loop_run(f->l); /* nothing else would end it */
    pthread_join(th, NULL);
    assert_int_equal(r, 0);
    assert_int_equal(atomic_load(&sig_calls), 2);

    /* The loop's thread blocks SIGUSR1 now: the handler can only run on
     * the other thread. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    struct killer k2 = {SIGUSR1, 50};
    assert_int_equal(pthread_create(&th, NULL, killer_unblocked_main, &k2), 0);
    stop_at = 3;
    run_guarded(f->l, &guard, GUARD_MS);
    pthread_join(th, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    assert_false(guard_fired);
    assert_int_equal(atomic_load(&sig_calls), 3);
    assert_int_equal(atomic_load(&sig_wrong_thread), 0);

    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
}

/* ---- limits and growth ------------------------------------------------------ */

/* select cannot watch fd >= FD_SETSIZE: -EMFILE, and the loop still works;
 * FD_SETSIZE - 1 works. Other backends take the high descriptor. */
static void high_descriptor(void **state)
{
    struct fixture *f = *state;
    rlim_t lim = raise_nofile();
    if (lim < FD_SETSIZE + 1) {
        print_message("high_descriptor: skipped: RLIMIT_NOFILE hard limit %llu is below "
                      "FD_SETSIZE + 1 = %d, so no descriptor >= FD_SETSIZE can exist\n",
                      (unsigned long long)lim, FD_SETSIZE + 1);
        skip();
    }
    int sv[2];
    make_pair(sv);
    int high = FD_SETSIZE, below = FD_SETSIZE - 1;
    assert_int_equal(dup3(sv[0], high, O_CLOEXEC), high);
    assert_int_equal(dup3(sv[0], below, O_CLOEXEC), below);
    assert_int_equal(write(sv[1], "x", 1), 1);

    struct io_rec r = {.stop_after = 1};
    struct iop__timer guard;
    int rc = iop__loop_io(f->l, high, IOP_EV_READ, on_io_rec, &r);
    if (strcmp(f->be->name, "select") == 0) {
        assert_int_equal(rc, -EMFILE);
        assert_int_equal(iop__loop_mask(f->l, high), 0);
    } else {
        assert_int_equal(rc, 0);
        run_guarded(f->l, &guard, GUARD_MS);
        assert_false(guard_fired);
        assert_int_equal(r.calls, 1);
        assert_int_equal(iop__loop_io(f->l, high, 0, NULL, NULL), 0);
    }
    /* The loop is intact, and the highest selectable descriptor works. */
    struct io_rec r2 = {.stop_after = 1};
    assert_int_equal(iop__loop_io(f->l, below, IOP_EV_READ, on_io_rec, &r2), 0);
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.events, IOP_EV_READ);
    assert_int_equal(iop__loop_io(f->l, below, 0, NULL, NULL), 0);
    close(high);
    close(below);
    close(sv[0]);
    close(sv[1]);
}

/* 500 descriptors (250 socket pairs, both ends), far past the initial
 * table of 64: each is reported readable exactly once (its callback
 * reads its byte and unwatches it). Then all unwatched, the loop idles. */
#define MANY_FDS 500

static int many_calls, many_bad;
static int many_seen[4096];

static void on_many(iop__loop *l, int fd, unsigned events, void *arg)
{
    (void)arg;
    if (events != IOP_EV_READ || fd < 0 || fd >= 4096)
        many_bad++;
    else
        many_seen[fd]++;
    char c;
    if (read(fd, &c, 1) != 1)
        many_bad++;
    iop__loop_io(l, fd, 0, NULL, NULL);
    if (++many_calls == MANY_FDS)
        iop__loop_stop(l);
}

static void grow_past_setsize(void **state)
{
    struct fixture *f = *state;
    rlim_t lim = raise_nofile();
    assert_true(lim >= MANY_FDS + 64);
    int fds[MANY_FDS];
    for (int i = 0; i < MANY_FDS; i += 2) {
        int sv[2];
        make_pair(sv);
        fds[i] = sv[0];
        fds[i + 1] = sv[1];
    }
    many_calls = many_bad = 0;
    memset(many_seen, 0, sizeof many_seen);
    int setsize0 = iop__loop_setsize(f->l);
    for (int i = 0; i < MANY_FDS; i++)
        assert_int_equal(iop__loop_io(f->l, fds[i], IOP_EV_READ, on_many, NULL), 0);
    assert_true(iop__loop_setsize(f->l) > setsize0);
    for (int i = 0; i < MANY_FDS; i++)
        assert_int_equal(write(fds[i ^ 1], "x", 1), 1);
    struct iop__timer guard;
    run_guarded(f->l, &guard, GUARD_MS);
    assert_false(guard_fired);
    assert_int_equal(many_calls, MANY_FDS);
    assert_int_equal(many_bad, 0);
    for (int i = 0; i < MANY_FDS; i++) {
        assert_int_equal(many_seen[fds[i]], 1);
        assert_int_equal(iop__loop_mask(f->l, fds[i]), 0);
    }
    /* Nothing is watched any more: only the guard ends the next run. */
    for (int i = 0; i < MANY_FDS; i++)
        assert_int_equal(write(fds[i ^ 1], "y", 1), 1);
    run_guarded(f->l, &guard, 50);
    assert_true(guard_fired);
    assert_int_equal(many_calls, MANY_FDS);
    for (int i = 0; i < MANY_FDS; i++)
        close(fds[i]);
}

/* ---- registration ----------------------------------------------------------- */

static const struct {
    const char *name;
    CMUnitTestFunction fn;
} cases[] = {
    {"timers_in_order", timers_in_order},
    {"stopped_timer_never_fires", stopped_timer_never_fires},
    {"restart_moves_timer", restart_moves_timer},
    {"random_timers", random_timers},
    {"fd_readable", fd_readable},
    {"fd_writable", fd_writable},
    {"fd_both", fd_both},
    {"unwatch_stops_callbacks", unwatch_stops_callbacks},
    {"close_other_in_batch", close_other_in_batch},
    {"wake_from_thread", wake_from_thread},
    {"signal_delivered", signal_delivered},
    {"high_descriptor", high_descriptor},
    {"grow_past_setsize", grow_past_setsize},
};
#define NCASES (sizeof cases / sizeof cases[0])
#define MAX_BACKENDS 8

int main(void)
{
    static struct fixture fx[MAX_BACKENDS];
    static struct CMUnitTest tests[MAX_BACKENDS * NCASES];
    static char names[MAX_BACKENDS * NCASES][64];
    size_t n = 0, nb = 0;
    for (const struct iop__backend *const *b = iop__backends(); *b && nb < MAX_BACKENDS; b++, nb++) {
        fx[nb].be = *b;
        for (size_t i = 0; i < NCASES; i++, n++) {
            snprintf(names[n], sizeof names[n], "%s.%s", (*b)->name, cases[i].name);
            tests[n] = (struct CMUnitTest){
                .name = names[n],
                .test_func = cases[i].fn,
                .setup_func = setup,
                .teardown_func = teardown,
                .initial_state = &fx[nb],
            };
        }
    }
    return _cmocka_run_group_tests("test_loop", tests, n, NULL, NULL);
}
