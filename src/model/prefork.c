/*
 * prefork: N processes started in advance, each blocking in accept() and
 * serving the client it gets to the end before taking the next (Stevens,
 * UNP vol. 1, ch. 30: the "preforked server"). The parent forks N
 * children and keeps N alive; --accept-lock serializes their waiting
 * (the thundering herd); --max-conns M turns a client beyond M busy
 * children away. The design in full, with its measurements and traps
 * (the herd, the robust mutex, dying children, stop, --once, accept
 * failures shared by the children, --max-conns): docs/models.md,
 * "prefork, in detail".
 */
#define _GNU_SOURCE
#include "internal.h"
#include "net/acceptor.h"
#include "model/children.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define PREFORK_MIN 4
#define RESTART_INTERVAL_MS 200

/* The page the children share. */
struct shared {
    pthread_mutex_t accept_lock; /* initialised only with --accept-lock */
    atomic_int accept_err;       /* the accept failure last reported, 0 if none */
    atomic_int busy[];           /* --max-conns: per slot, serving a client */
};

struct prefork {
    iop_server *s;
    struct iop__children kids;
    unsigned want;          /* N */
    pid_t parent;
    struct shared *sh;      /* the shared page */
    int locked;             /* --accept-lock: sh->accept_lock is used */
    int once_done;          /* --once: the child has served its client */
    unsigned tokens;        /* restarts allowed now */
    uint64_t refill_at;     /* when the next token comes */
    int throttled;          /* reported that restarts are being held back */
    int fork_err;           /* the fork() failure last reported */
    uint64_t retry_at;      /* after a failed fork(), when to try again */
    int running;            /* past the first N forks */
    /* --max-conns only (else slot_pid is NULL and full[] is -1): */
    pid_t *slot_pid;        /* the child in each slot, 0 if free */
    unsigned slot;          /* in a child: its own */
    int full[2];            /* a child that takes the last free slot writes here */
};

static unsigned default_children(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cores > 0 ? (unsigned)cores * 2 : PREFORK_MIN;
    return n < PREFORK_MIN ? PREFORK_MIN : n;
}

/* ---- the accept lock ------------------------------------------------------ */

static size_t shared_size(unsigned nslots)
{
    return sizeof(struct shared) + nslots * sizeof(atomic_int);
}

/* MAP_ANONYMOUS memory starts zeroed: every slot free. */
static struct shared *shared_create(int with_lock, unsigned nslots)
{
    struct shared *sh = mmap(NULL, shared_size(nslots), PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return NULL;
    atomic_init(&sh->accept_err, 0);
    if (!with_lock)
        return sh;
    pthread_mutexattr_t a;
    int e = pthread_mutexattr_init(&a);
    if (e == 0)
        e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (e == 0)
        e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (e == 0)
        e = pthread_mutex_init(&sh->accept_lock, &a);
    pthread_mutexattr_destroy(&a);
    if (e != 0) {
        munmap(sh, shared_size(nslots));
        errno = e;
        return NULL;
    }
    return sh;
}

static void shared_destroy(struct shared *sh, int with_lock, unsigned nslots)
{
    if (!sh)
        return;
    if (with_lock)
        pthread_mutex_destroy(&sh->accept_lock);
    munmap(sh, shared_size(nslots));
}

/* ---- --max-conns: busy slots --------------------------------------------------- */

static int counting(const struct prefork *p) { return p->slot_pid != NULL; }

static int all_busy(const struct prefork *p)
{
    for (unsigned i = 0; i < p->want; i++)
        if (!atomic_load(&p->sh->busy[i]))
            return 0;
    return 1;
}

/* In a child, around serving a client. */
static void slot_busy(struct prefork *p, int busy)
{
    if (!counting(p))
        return;
    int was_full = !busy && all_busy(p);
    atomic_store(&p->sh->busy[p->slot], busy);
    /* The last free slot taken: the parent turns the next ones away; the
     * first one freed: it stops (and says so). */
    char b = 0;
    if ((busy ? all_busy(p) : was_full) && write(p->full[1], &b, 1) < 0) {
        /* full: the parent has a wake-up pending already */
    }
}

/* In the parent, while every slot is busy: accept and close what waits.
 * Once a slot is free, the children serve again: the refusals' episode
 * ends there (it is the parent's, and the children admit). */
static void turn_away(struct prefork *p)
{
    struct iop__acceptor *a = &p->s->acceptor;
    if (!all_busy(p)) {
        iop__episode_ok(&a->refusing);
        iop__acceptor_caught_up(a);
        return;
    }
    while (all_busy(p)) {
        struct sockaddr_storage peer;
        socklen_t len;
        int fd = iop__acceptor_accept(a, &peer, &len, 0);
        if (fd < 0)
            return; /* EAGAIN: none left; others: the children meet them too */
        iop__acceptor_refuse(a, -EUSERS, "%u clients already (--max-conns)", p->want);
        close(fd);
    }
}

static void accept_lock(struct shared *sh)
{
    if (pthread_mutex_lock(&sh->accept_lock) == EOWNERDEAD)
        pthread_mutex_consistent(&sh->accept_lock); /* its holder died: ours now */
}

/* ---- a child ----------------------------------------------------------------- */

static void child_main(struct prefork *p)
{
    iop_server *s = p->s;
    iop__tls_server_follow(s); /* a reload is the parent's to say */
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != p->parent) /* the parent died before the line above */
        iop_server_stop(s);
#endif
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peerlen;
        if (p->locked)
            accept_lock(p->sh);
        int fd = iop__accept(s, &peer, &peerlen);
        if (p->locked)
            pthread_mutex_unlock(&p->sh->accept_lock);
        if (fd == -ECANCELED)
            break;
        if (fd < 0) {
            iop__accept_failed(s, fd); /* pauses on EMFILE; ends early on stop */
            continue;
        }
        iop__acceptor_take(&s->acceptor, fd, 0); /* the parent counts (--max-conns) */
        slot_busy(p, 1);
        iop__serve_inline(s, fd, &peer, peerlen); /* this thread takes the stop signal */
        slot_busy(p, 0);
        if (s->cfg.once)
            break;
    }
    _exit(0);
}

/* ---- the parent -------------------------------------------------------------- */

static int spawn(struct prefork *p)
{
    if (counting(p)) /* a free slot: there is one for each missing child */
        for (p->slot = 0; p->slot < p->want && p->slot_pid[p->slot]; p->slot++)
            ;
    pid_t pid = iop__children_fork(&p->kids, p->s);
    if (pid == 0)
        child_main(p); /* does not return */
    if (pid > 0 && counting(p))
        p->slot_pid[p->slot] = pid;
    if (pid < 0) {
        if ((int)pid != p->fork_err && (p->kids.n > 0 || p->running))
            iop_report(p->s, IOP_LOG_ERROR, "fork: %s; serving with %zu of %u "
                       "children, trying again every %d ms", strerror((int)-pid),
                       p->kids.n, p->want, RESTART_INTERVAL_MS);
        p->fork_err = (int)pid;
        return (int)pid;
    }
    if (p->fork_err && p->kids.n >= p->want) /* all N again */
        iop_report(p->s, IOP_LOG_INFO, "fork: recovered");
    if (p->kids.n >= p->want)
        p->fork_err = 0;
    return 0;
}

static void child_exited(void *arg, pid_t pid, int status, int tracked)
{
    struct prefork *p = arg;
    for (unsigned i = 0; counting(p) && i < p->want; i++)
        if (p->slot_pid[i] == pid) { /* it may have died serving */
            p->slot_pid[i] = 0;
            atomic_store(&p->sh->busy[i], 0);
        }
    if (!tracked || iop__stopping(p->s))
        return;
    if (p->s->cfg.once && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        p->once_done = 1;
        return;
    }
    if (WIFSIGNALED(status))
        iop_report(p->s, IOP_LOG_ERROR, "child %d killed by signal %d; "
                   "starting another", (int)pid, WTERMSIG(status));
    else
        iop_report(p->s, IOP_LOG_ERROR, "child %d exited with status %d; "
                   "starting another", (int)pid, WEXITSTATUS(status));
}

/* The restart budget: a burst of `want`, then one per interval. */
static void refill(struct prefork *p, uint64_t now)
{
    while (p->tokens < p->want && now >= p->refill_at) {
        p->tokens++;
        p->refill_at += RESTART_INTERVAL_MS;
    }
    if (p->tokens == p->want)
        p->refill_at = now + RESTART_INTERVAL_MS;
}

/* Start replacements as the budget allows; returns the poll() timeout
 * until more may be started (-1: none missing). */
static int replace_children(struct prefork *p)
{
    uint64_t now = iop__now_ms();
    refill(p, now);
    if (p->fork_err && now < p->retry_at)
        return (int)(p->retry_at - now) + 1; /* fork() failed: try later */
    while (p->kids.n < p->want && p->tokens > 0) {
        if (spawn(p) != 0) {
            /* Not a death: the budget is kept for those. */
            p->retry_at = now + RESTART_INTERVAL_MS;
            return RESTART_INTERVAL_MS + 1;
        }
        p->tokens--;
    }
    if (p->kids.n >= p->want) {
        p->throttled = 0;
        return -1;
    }
    if (!p->throttled && p->tokens == 0)
        iop_report(p->s, IOP_LOG_ERROR, "children are dying faster than they "
                   "can be replaced; starting at most one every %d ms",
                   RESTART_INTERVAL_MS);
    p->throttled = p->tokens == 0;
    uint64_t at = p->refill_at > now ? p->refill_at : now;
    return (int)(at - now) + 1;
}

static void prefork_free(struct prefork *p)
{
    if (p->kids.pipe[0] >= 0) /* opened */
        iop__children_close(&p->kids);
    p->s->acceptor.shared = NULL;
    shared_destroy(p->sh, p->locked, counting(p) ? p->want : 0);
    free(p->slot_pid);
    for (int i = 0; i < 2; i++)
        if (p->full[i] >= 0)
            close(p->full[i]);
}

/* --max-conns: the slots and the "full" pipe. */
static int counting_open(struct prefork *p)
{
    if (!p->s->cfg.max_conns)
        return 0;
    if (!(p->slot_pid = calloc(p->want, sizeof *p->slot_pid)))
        return -ENOMEM;
    return pipe2(p->full, O_CLOEXEC | O_NONBLOCK) == 0 ? 0 : -errno;
}

static void drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

static int run_prefork(iop_server *s)
{
    struct prefork p = {.s = s, .parent = getpid(), .full = {-1, -1},
                        .kids = {.pipe = {-1, -1}}};
    p.want = s->cfg.workers ? s->cfg.workers : default_children();
    if (s->cfg.once)
        p.want = 1;
    if (s->cfg.max_conns && s->cfg.max_conns < p.want)
        p.want = s->cfg.max_conns;
    p.tokens = p.want;
    /* Children that lose the race for a connection get EAGAIN, not a
     * blocked accept() that the stop pipe could not interrupt. */
    int r = iop__set_nonblocking(s->listen_fd);
    if (r != 0)
        return r;
    p.locked = s->cfg.accept_lock;
    r = counting_open(&p);
    if (r != 0) {
        prefork_free(&p);
        return r;
    }
    if (!(p.sh = shared_create(p.locked, counting(&p) ? p.want : 0))) {
        r = iop__fail(s, -errno, "%s: %s", p.locked ? "accept lock" : "shared page",
                      strerror(errno));
        prefork_free(&p);
        return r;
    }
    s->acceptor.shared = &p.sh->accept_err; /* the children's, after fork */
    r = iop__children_open(&p.kids);
    if (r != 0) {
        prefork_free(&p);
        return r;
    }
    for (unsigned i = 0; i < p.want && r == 0; i++)
        r = spawn(&p);
    if (p.kids.n == 0) { /* not one: an error, not a server without children */
        r = iop__fail(s, r, "fork: %s; no child could be started", strerror(-r));
        prefork_free(&p);
        return r;
    }
    if (r != 0) /* fewer than N: the loop tries again (replace_children) */
        p.retry_at = iop__now_ms() + RESTART_INTERVAL_MS;
    p.running = 1;
    r = 0;
    while (!p.once_done) {
        if (iop__tls_server_reload_now(s)) /* SIGHUP: the children too */
            iop__children_signal(&p.kids, SIGHUP);
        int timeout = replace_children(&p);
        /* The listener only while every slot is busy (--max-conns). */
        int watch = counting(&p) && all_busy(&p);
        struct pollfd pf[4] = {
            {.fd = s->stop_pipe[0], .events = POLLIN},
            {.fd = iop__children_fd(&p.kids), .events = POLLIN},
            {.fd = p.full[0], .events = POLLIN},
            {.fd = watch ? s->listen_fd : -1, .events = POLLIN},
        };
        if (poll(pf, 4, timeout) < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            iop_server_stop(s);
            break;
        }
        if (pf[0].revents)
            break;
        if (pf[1].revents)
            iop__children_reap(&p.kids, child_exited, &p);
        if (pf[2].revents)
            drain_pipe(p.full[0]);
        if (pf[3].revents || (s->acceptor.refusing.err && !all_busy(&p)))
            turn_away(&p); /* refuse, or end the refusals once a slot is free */
    }
    if (p.once_done)
        iop_server_stop(s); /* wakes any child still waiting (none with one) */
    if (p.kids.n > 0) {
        /* Children waiting for a client have seen the stop pipe; SIGTERM
         * makes those serving one answer what they got and finish. */
        iop__children_signal(&p.kids, SIGTERM);
        iop__children_wait(&p.kids, s->cfg.drain_ms, NULL, NULL);
        if (p.kids.n > 0) {
            iop_report(s, IOP_LOG_INFO, "%zu children still busy after %d ms; "
                       "killing them", p.kids.n, s->cfg.drain_ms);
            iop__children_signal(&p.kids, SIGKILL);
        }
    }
    iop__children_wait(&p.kids, -1, NULL, NULL);
    prefork_free(&p);
    return r;
}

const struct iop__model iop__model_prefork = {
    .info = {
        .name = "prefork",
        .summary = "N processes started in advance, each accepting (-w N)",
        .datagram = 0,
        .shared_state = 0,
    },
    .one_listener = 1,
    .run = run_prefork,
};
