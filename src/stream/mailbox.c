/*
 * iop_post() and the mailboxes behind it (see mailbox.h).
 */
#define _GNU_SOURCE
#include "mailbox.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define HIGH_WATER_DEFAULT (256 * 1024) /* as evconn.c */

struct iop__msg {
    struct iop__msg *next;
    iop_conn *conn;
    size_t len;
    char data[];
};

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
    m->thread = pthread_self();
    m->high_water = s->cfg.high_water ? s->cfg.high_water : HIGH_WATER_DEFAULT;
    m->kick = kick;
    m->kick_arg = kick_arg;
    return 0;
}

static void free_list(struct iop__msg *p)
{
    while (p) {
        struct iop__msg *next = p->next;
        free(p);
        p = next;
    }
}

void iop__mailbox_adopt(struct iop__mailbox *m) { m->thread = pthread_self(); }

void iop__mailbox_destroy(struct iop__mailbox *m)
{
    if (m->wake_fd < 0)
        return;
    free_list(m->head);
    free_list(m->batch);
    m->head = m->tail = m->batch = NULL;
    pthread_mutex_destroy(&m->lock);
    close(m->wake_fd);
    m->wake_fd = -1;
}

/* On the owner's thread: queue the bytes as output of c, within its limit. */
static int deliver(struct iop__mailbox *m, iop_conn *c, const void *p, size_t n)
{
    if ((c->flags & (IOP__CONN_CLOSING | IOP__CONN_NOTIFIED | IOP__CONN_OVERFLOW)) ||
        c->error)
        return -EPIPE;
    int r;
    if (n > m->high_water || c->out.bytes > m->high_water - n) {
        c->flags |= IOP__CONN_OVERFLOW; /* the owner closes it */
        r = -ENOBUFS;
    } else {
        r = iop_send(c, p, n);
    }
    if (m->kick)
        m->kick(c, m->kick_arg);
    return r;
}

int iop_post(iop_conn *c, const void *data, size_t len)
{
    struct iop__mailbox *m = c->mbox;
    if (!m)
        return iop_send(c, data, len);
    if (len == 0)
        return 0;
    /* The owner's own thread, with nothing posted before: straight in. */
    if (pthread_equal(pthread_self(), m->thread) &&
        atomic_load_explicit(&m->pending, memory_order_acquire) == 0)
        return deliver(m, c, data, len);
    if (len > SIZE_MAX - sizeof(struct iop__msg))
        return -ENOMEM;
    struct iop__msg *msg = malloc(sizeof *msg + len);
    if (!msg)
        return -ENOMEM;
    msg->next = NULL;
    msg->conn = c;
    msg->len = len;
    memcpy(msg->data, data, len);
    pthread_mutex_lock(&m->lock);
    int was_empty = m->head == NULL;
    if (m->tail)
        m->tail->next = msg;
    else
        m->head = msg;
    m->tail = msg;
    atomic_fetch_add_explicit(&m->pending, 1, memory_order_relaxed);
    pthread_mutex_unlock(&m->lock);
    /* A list that was not empty has a wake-up on its way already: whoever
     * made it non-empty writes one after unlocking, and the owner reads
     * the eventfd before it takes the list. */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(m->wake_fd, &one, sizeof one);
        (void)w; /* EAGAIN only at a count of 2^64 - 2: still readable */
    }
    return 0;
}

void iop__mailbox_drain(struct iop__mailbox *m)
{
    uint64_t count;
    ssize_t r = read(m->wake_fd, &count, sizeof count); /* before the list */
    (void)r;
    pthread_mutex_lock(&m->lock);
    struct iop__msg *batch = m->head;
    m->head = m->tail = NULL;
    pthread_mutex_unlock(&m->lock);
    /* Kept in m->batch while delivering, so a purge can reach it. Posts
     * made meanwhile from this thread see pending > 0 and queue behind. */
    m->batch = batch;
    struct iop__msg *msg;
    while ((msg = m->batch) != NULL) {
        m->batch = msg->next;
        deliver(m, msg->conn, msg->data, msg->len);
        free(msg);
        atomic_fetch_sub_explicit(&m->pending, 1, memory_order_release);
    }
}

/* Unlink c's messages from *list; returns how many. */
static size_t drop_conn(struct iop__msg **list, struct iop__msg **tail, iop_conn *c)
{
    size_t n = 0;
    struct iop__msg *last = NULL;
    for (struct iop__msg **pp = list; *pp;) {
        struct iop__msg *msg = *pp;
        if (msg->conn == c) {
            *pp = msg->next;
            free(msg);
            n++;
        } else {
            last = msg;
            pp = &msg->next;
        }
    }
    if (tail)
        *tail = last;
    return n;
}

void iop__mailbox_purge(struct iop__mailbox *m, iop_conn *c)
{
    if (atomic_load_explicit(&m->pending, memory_order_acquire) == 0)
        return; /* nothing posted here at all: the common case, no lock */
    pthread_mutex_lock(&m->lock);
    size_t n = drop_conn(&m->head, &m->tail, c);
    pthread_mutex_unlock(&m->lock);
    n += drop_conn(&m->batch, NULL, c);
    if (n)
        atomic_fetch_sub_explicit(&m->pending, n, memory_order_release);
}

void iop__mailbox_report_overflow(const iop_conn *c)
{
    iop_report(c->server, IOP_LOG_INFO, "closing %s: not reading (%zu bytes queued)",
               iop_conn_peer_name(c), c->out.bytes);
}
