/*
 * iop_post(), iop_post_many() and the mailboxes behind them (see
 * mailbox.h).
 */
#define _GNU_SOURCE
#include "mailbox.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>


/* conn->posted's top bit: a post would have passed the high watermark. */
#define POST_OVER ((size_t)1 << (sizeof(size_t) * CHAR_BIT - 1))

/* The end of a mailbox's list of connections, so that a connection's
 * mq_next is NULL exactly when it is on no list. */
static iop_conn list_end;
#define END (&list_end)

struct post;

/* One receiver's entry: its place in its mailbox. */
struct iop__msg {
    struct iop__msg *next;
    iop_conn *conn;
    struct post *post;
};

/* One post: its bytes, copied once, and an entry for each receiver, in
 * one allocation, freed when the last entry has been delivered or
 * purged. */
struct post {
    atomic_size_t refs; /* entries in mailboxes, + 1 while being posted */
    size_t len;
    char *data; /* after the entries */
    struct iop__msg ent[];
};

/* What an entry of len bytes holds in memory, as counted against its
 * receiver's limit: its bytes (shared or not: they stay while it waits),
 * its entry and a post's header. So a flood of tiny posts is bounded by
 * the memory it takes, not by its bytes alone. */
static size_t cost(size_t len)
{
    return len + sizeof(struct iop__msg) + sizeof(struct post);
}

static struct post *post_new(size_t n, const void *data, size_t len)
{
    if (n > (SIZE_MAX - sizeof(struct post)) / sizeof(struct iop__msg) ||
        len > SIZE_MAX - sizeof(struct post) - n * sizeof(struct iop__msg))
        return NULL;
    struct post *p = malloc(sizeof *p + n * sizeof p->ent[0] + len);
    if (!p)
        return NULL;
    atomic_init(&p->refs, 1);
    p->len = len;
    p->data = (char *)&p->ent[n];
    memcpy(p->data, data, len);
    return p;
}

static void post_release(struct post *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}

int iop__mailbox_init(struct iop__mailbox *m, const iop_server *s,
                      iop__kick_fn *kick, void *kick_arg)
{
    memset(m, 0, sizeof *m);
    m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->wake_fd < 0)
        return -errno;
    int e = pthread_mutex_init(&m->lock, NULL);
    if (e != 0) {
        close(m->wake_fd);
        m->wake_fd = -1;
        return -e;
    }
    atomic_init(&m->pending, 0);
    m->ready = END;
    m->thread = pthread_self();
    m->high_water = s->pol.high_water;
    m->kick = kick;
    m->kick_arg = kick_arg;
    return 0;
}

static void release_list(struct iop__msg *e)
{
    while (e) {
        struct iop__msg *next = e->next;
        post_release(e->post);
        e = next;
    }
}

void iop__mailbox_adopt(struct iop__mailbox *m) { m->thread = pthread_self(); }

/* Take c's queue (under the lock): its entries, first to last. */
static struct iop__msg *take_queue(iop_conn *c)
{
    struct iop__msg *t = c->mq_tail;
    if (!t)
        return NULL;
    struct iop__msg *first = t->next;
    t->next = NULL;
    c->mq_tail = NULL;
    return first;
}

void iop__mailbox_destroy(struct iop__mailbox *m)
{
    if (m->wake_fd < 0)
        return;
    /* Connections are purged as they close: normally nobody is left. */
    for (iop_conn *c = m->ready, *next; c != END; c = next) {
        next = c->mq_next;
        c->mq_next = NULL;
        release_list(take_queue(c));
    }
    m->ready = END;
    release_list(m->batch);
    m->batch = NULL;
    pthread_mutex_destroy(&m->lock);
    close(m->wake_fd);
    m->wake_fd = -1;
}

static size_t backlog(const iop_conn *c)
{
    return atomic_load_explicit(&c->out.bytes, memory_order_relaxed) +
           (atomic_load_explicit(&c->posted, memory_order_relaxed) & ~POST_OVER);
}

/* On the owner's thread: c passed its limit. */
static void overflow_here(struct iop__mailbox *m, iop_conn *c)
{
    c->flags |= IOP__CONN_OVERFLOW; /* the owner closes it */
    atomic_fetch_or_explicit(&c->posted, POST_OVER, memory_order_relaxed);
    if (m->kick)
        m->kick(c, m->kick_arg);
}

/* On the owner's thread: queue the bytes as output of c, within its
 * limit. `queued`: they come from the mailbox, where c's backlog counted
 * them already. */
static int deliver(struct iop__mailbox *m, iop_conn *c, const void *p, size_t n, int queued)
{
    if ((c->flags & (IOP__CONN_CLOSING | IOP__CONN_NOTIFIED | IOP__CONN_OVERFLOW)) ||
        c->error)
        return -EPIPE;
    size_t have = queued ? atomic_load_explicit(&c->out.bytes, memory_order_relaxed)
                         : backlog(c);
    if (n > m->high_water || have > m->high_water - n) {
        overflow_here(m, c);
        return -ENOBUFS;
    }
    int r = iop_send(c, p, n);
    if (m->kick)
        m->kick(c, m->kick_arg);
    return r;
}

static void wake(struct iop__mailbox *m)
{
    uint64_t one = 1;
    ssize_t w = write(m->wake_fd, &one, sizeof one);
    (void)w; /* EAGAIN only at a count of 2^64 - 2: still readable */
}

/* Put c on m's list of connections with news, under the lock. Returns 1
 * if the list was empty: the owner must be woken. */
static int list(struct iop__mailbox *m, iop_conn *c)
{
    if (c->mq_next)
        return 0; /* on it already (or, over its limit, on the owner's) */
    int was_empty = m->ready == END;
    c->mq_next = m->ready;
    m->ready = c;
    return was_empty;
}

/* From any thread: reserve room for a post of n bytes in c's backlog. 0,
 * or -ENOBUFS if c is over its limit (then every later post is dropped
 * too, and the owner is told, once). */
static int reserve(struct iop__mailbox *m, iop_conn *c, size_t n)
{
    size_t len = n > m->high_water ? n : cost(n);
    size_t cur = atomic_load_explicit(&c->posted, memory_order_relaxed);
    for (;;) {
        if (cur & POST_OVER)
            return -ENOBUFS;
        size_t out = atomic_load_explicit(&c->out.bytes, memory_order_relaxed);
        if (len > m->high_water || out > m->high_water - len ||
            cur > m->high_water - len - out)
            break;
        if (atomic_compare_exchange_weak_explicit(&c->posted, &cur, cur + len,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
    cur = atomic_fetch_or_explicit(&c->posted, POST_OVER, memory_order_relaxed);
    if (!(cur & POST_OVER)) { /* the first to see it tells the owner */
        pthread_mutex_lock(&m->lock);
        int was_empty = list(m, c);
        pthread_mutex_unlock(&m->lock);
        if (was_empty)
            wake(m);
    }
    return -ENOBUFS;
}

/* Post to one receiver; *p is the post, made on first need with room for
 * n entries, of which *used are taken. */
static int post_to(iop_conn *c, const void *data, size_t len, struct post **p, size_t n,
                   size_t *used)
{
    struct iop__mailbox *m = c->mbox;
    if (!m)
        return iop_send(c, data, len);
    /* The owner's own thread, with nothing posted before: straight in. */
    if (pthread_equal(pthread_self(), m->thread) &&
        atomic_load_explicit(&m->pending, memory_order_acquire) == 0)
        return deliver(m, c, data, len, 0);
    if (!*p && !(*p = post_new(n, data, len)))
        return -ENOMEM;
    int r = reserve(m, c, len);
    if (r != 0)
        return r;
    struct iop__msg *e = &(*p)->ent[(*used)++];
    e->conn = c;
    e->post = *p;
    atomic_fetch_add_explicit(&(*p)->refs, 1, memory_order_relaxed);
    pthread_mutex_lock(&m->lock);
    if (c->mq_tail) {
        e->next = c->mq_tail->next;
        c->mq_tail->next = e;
    } else {
        e->next = e;
    }
    c->mq_tail = e;
    int was_empty = list(m, c);
    atomic_fetch_add_explicit(&m->pending, 1, memory_order_relaxed);
    pthread_mutex_unlock(&m->lock);
    /* A mailbox whose list was not empty has a wake-up on its way already:
     * whoever made it non-empty writes one after unlocking, and the owner
     * reads the eventfd before it takes the list. */
    if (was_empty)
        wake(m);
    return 0;
}

int iop_post(iop_conn *c, const void *data, size_t len)
{
    if (len == 0)
        return c->mbox ? 0 : iop_send(c, data, len);
    struct post *p = NULL;
    size_t used = 0;
    int r = post_to(c, data, len, &p, 1, &used);
    if (p)
        post_release(p); /* the poster's hold */
    return r;
}

int iop_post_many(iop_conn *const conns[], size_t n, const void *data, size_t len)
{
    if (n > INT_MAX)
        return -EINVAL;
    struct post *p = NULL;
    size_t used = 0;
    int got = 0, nomem = 0;
    for (size_t i = 0; i < n; i++) {
        if (len == 0) {
            got++;
            continue;
        }
        int r = post_to(conns[i], data, len, &p, n, &used);
        if (r == 0)
            got++;
        else if (r == -ENOMEM)
            nomem = 1;
    }
    if (p)
        post_release(p);
    if (got == 0 && nomem)
        return -ENOMEM;
    return got;
}

void iop__mailbox_drain(struct iop__mailbox *m)
{
    uint64_t count;
    ssize_t r = read(m->wake_fd, &count, sizeof count); /* before the list */
    (void)r;
    /* Every listed connection's queue, one after the other, into the
     * batch; those over their limit onto a list of their own. Such a
     * connection is never listed again (posts to it stop at its bit), so
     * its mq_next is left to this list, ended by END: not NULL, which
     * keeps a late poster from listing it. */
    struct iop__msg *batch = NULL, **bt = &batch;
    iop_conn *over = END;
    pthread_mutex_lock(&m->lock);
    for (iop_conn *c = m->ready, *next; c != END; c = next) {
        next = c->mq_next;
        struct iop__msg *last = c->mq_tail, *first = take_queue(c);
        if (first) {
            *bt = first;
            bt = &last->next;
        }
        if (atomic_load_explicit(&c->posted, memory_order_relaxed) & POST_OVER) {
            c->mq_next = over;
            over = c;
        } else {
            c->mq_next = NULL;
        }
    }
    m->ready = END;
    pthread_mutex_unlock(&m->lock);
    /* The overflowed first: what is posted to them is not delivered. */
    for (iop_conn *c = over; c != END; c = c->mq_next)
        if (!(c->flags & (IOP__CONN_NOTIFIED | IOP__CONN_OVERFLOW))) {
            c->flags |= IOP__CONN_OVERFLOW;
            if (m->kick)
                m->kick(c, m->kick_arg);
        }
    /* Kept in m->batch while delivering, so a purge can reach it. Posts
     * made meanwhile from this thread see pending > 0 and queue behind. */
    m->batch = batch;
    struct iop__msg *e;
    while ((e = m->batch) != NULL) {
        m->batch = e->next;
        iop_conn *c = e->conn;
        struct post *p = e->post;
        /* An overflowed connection's posts stay counted, for its report. */
        if (!(c->flags & IOP__CONN_OVERFLOW)) {
            deliver(m, c, p->data, p->len, 1);
            atomic_fetch_sub_explicit(&c->posted, cost(p->len), memory_order_relaxed);
        }
        post_release(p);
        atomic_fetch_sub_explicit(&m->pending, 1, memory_order_release);
    }
}

/* Release the entries of `list`, first to last; returns how many. */
static size_t release_count(struct iop__msg *e)
{
    size_t n = 0;
    for (struct iop__msg *next; e; e = next, n++) {
        next = e->next;
        post_release(e->post);
    }
    return n;
}

void iop__mailbox_purge(struct iop__mailbox *m, iop_conn *c)
{
    /* Every entry counts its bytes (a post of none is never queued), and a
     * connection is listed only with entries or over its limit: with
     * nothing posted and not over, it is on no list. The common case: no
     * lock. */
    if (atomic_load_explicit(&c->posted, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&m->lock);
    size_t n = release_count(take_queue(c));
    if (c->mq_next) { /* on the list, or on a drain's (then long done) */
        for (iop_conn **pp = &m->ready; *pp != END; pp = &(*pp)->mq_next)
            if (*pp == c) {
                *pp = c->mq_next;
                break;
            }
        c->mq_next = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    /* A batch is delivered whole by the drain that took it: empty here,
     * unless a close ever happens inside one. */
    for (struct iop__msg **pp = &m->batch; *pp;) {
        struct iop__msg *e = *pp;
        if (e->conn == c) {
            *pp = e->next;
            post_release(e->post);
            n++;
        } else {
            pp = &e->next;
        }
    }
    atomic_store_explicit(&c->posted, 0, memory_order_relaxed);
    if (n)
        atomic_fetch_sub_explicit(&m->pending, n, memory_order_release);
}

void iop__mailbox_report_overflow(const iop_conn *c)
{
    iop_report(c->server, IOP_LOG_INFO, "closing %s: not reading (%zu bytes queued)",
               iop_conn_peer_name(c), backlog(c));
}
