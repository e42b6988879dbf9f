/*
 * A connection set: the policy every event model's connections obey (see
 * connset.h); the models supply the mechanism.
 */
#define _GNU_SOURCE
#include "connset.h"
#include "layers.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- life of the set --------------------------------------------------------- */

int iop__connset_init(struct iop__connset *set, iop_server *s,
                      const struct iop__connset_ops *ops, void *owner)
{
    memset(set, 0, sizeof *set);
    set->s = s;
    set->pol = &s->pol;
    set->ops = ops;
    set->owner = owner;
    set->now = iop__now_ms();
    if (!(s->svc->flags & IOP_SERVICE_SHARED_STATE))
        return 0;
    if (!(set->mbox = malloc(sizeof *set->mbox)))
        return -ENOMEM;
    int r = iop__mailbox_init(set->mbox, s, iop__connset_kick, set);
    if (r != 0) {
        free(set->mbox);
        set->mbox = NULL;
    }
    return r;
}

void iop__connset_adopt(struct iop__connset *set)
{
    if (set->mbox)
        iop__mailbox_adopt(set->mbox);
}

void iop__connset_free(struct iop__connset *set)
{
    while (set->active.head)
        iop__connset_close(set, set->active.head, -ECANCELED);
    while (set->lingering.head)
        iop__connset_close(set, set->lingering.head, 0);
    if (set->mbox) {
        iop__mailbox_destroy(set->mbox);
        free(set->mbox);
        set->mbox = NULL;
    }
    free(set->kicked);
    set->kicked = NULL;
    set->nkicked = set->kickcap = 0;
}

/* ---- timers ------------------------------------------------------------------ */

uint64_t iop__connset_next_deadline(const struct iop__connset *set)
{
    uint64_t at = UINT64_MAX;
    if (set->lingering.head)
        at = set->lingering.head->deadline;
    int idle = set->pol->idle_ms;
    if (idle > 0 && set->active.head) {
        uint64_t t = set->active.head->last_active + (uint64_t)idle;
        if (t < at)
            at = t;
    }
    return at;
}

/* One timer for the set, due when the first connection expires; armed
 * again only to come sooner (a later one finds nothing and re-arms). */
static void schedule(struct iop__connset *set)
{
    if (!set->ops->arm_timer)
        return;
    uint64_t at = iop__connset_next_deadline(set);
    if (at == UINT64_MAX || (set->timer_at && set->timer_at <= at))
        return;
    set->timer_at = at;
    set->ops->arm_timer(set, at);
}

void iop__connset_sweep(struct iop__connset *set)
{
    uint64_t now = set->now = iop__now_ms();
    set->timer_at = 0;
    while (set->lingering.head && set->lingering.head->deadline <= now)
        iop__connset_close(set, set->lingering.head, 0);
    int idle = set->pol->idle_ms;
    while (idle > 0 && set->active.head &&
           set->active.head->last_active + (uint64_t)idle <= now)
        iop__connset_close(set, set->active.head, -ETIMEDOUT);
    schedule(set);
}

/* ---- opening ------------------------------------------------------------------- */

void iop__connset_open(struct iop__connset *set, iop_conn *c, int fd,
                       const struct sockaddr_storage *peer, socklen_t peerlen)
{
    iop__conn_init(c, set->s, fd, peer, peerlen);
    c->owner = set;
    c->mbox = set->mbox;
    c->last_active = set->now;
    set->nconns++;
    iop__connlist_append(&set->active, c);
    schedule(set);
    int r = iop__conn_start(c);
    if (r != 0) { /* closed at its first settle, without lingering */
        c->error = r;
        c->flags |= IOP__CONN_CLOSING | IOP__CONN_PEER_EOF;
    }
}

/* ---- input ----------------------------------------------------------------------- */

/* Progress moves a connection to the tail, so the head is the one silent
 * longest and the sweep stops at the first that has not expired. Progress
 * is a complete message received or bytes written (the rule of the
 * blocking path too): bytes that only add to a partial frame are not, so
 * a peer trickling a frame it never finishes is idle. */
static void touch(struct iop__connset *set, iop_conn *c)
{
    c->last_active = set->now;
    if (set->active.tail != c && !(c->flags & IOP__CONN_LINGER)) {
        iop__connlist_remove(&set->active, c);
        iop__connlist_append(&set->active, c);
    }
}

int iop__connset_input(struct iop__connset *set, iop_conn *c, const char *data, size_t n)
{
    if (c->flags & (IOP__CONN_CLOSING | IOP__CONN_LINGER))
        return 0; /* no more messages: discarded */
    uint32_t before = c->progress;
    int r = iop__conn_input(c, data, n);
    if (c->progress != before)
        touch(set, c); /* a message was completed */
    if (r == -EMSGSIZE) {
        iop__conn_too_long(c);
        r = 0;
    }
    if (iop__buf_used(&c->in) == 0)
        iop__buf_free(&c->in); /* idle connections hold no buffer */
    return r;
}

void iop__connset_peer_eof(struct iop__connset *set, iop_conn *c)
{
    (void)set;
    iop__conn_input_end(c);
}

void iop__connset_sent(struct iop__connset *set, iop_conn *c) { touch(set, c); }

/* ---- output ----------------------------------------------------------------------- */

/* The peer's FIN ends input, not output (TCP's half-close; sshd too sends
 * a command's output after the client's EOF): a producer goes on after
 * it, until it has nothing more, the service closes, or the server stops. */
int iop__connset_produce_once(struct iop__connset *set, iop_conn *c)
{
    const struct iop_service *svc = set->s->svc;
    if (!svc->on_drain || set->stopping || !(c->flags & IOP__CONN_OPENED) ||
        (c->flags & (IOP__CONN_CLOSING | IOP__CONN_LINGER)))
        return 0;
    size_t before = c->out.bytes;
    svc->on_drain(c);
    return c->out.bytes != before;
}

void iop__connset_produce(struct iop__connset *set, iop_conn *c)
{
    for (int round = 0; round < IOP__PRODUCE_ROUNDS; round++)
        if (c->out.bytes > set->pol->low_water || !iop__connset_produce_once(set, c))
            return;
}

void iop__connset_watermarks(struct iop__connset *set, iop_conn *c)
{
    if (c->out.bytes >= set->pol->high_water)
        c->flags |= IOP__CONN_PAUSED;
    else if (c->out.bytes <= set->pol->low_water)
        c->flags &= ~IOP__CONN_PAUSED;
}

int iop__connset_wants_input(const struct iop__connset *set, const iop_conn *c)
{
    return !set->stopping &&
           !(c->flags & (IOP__CONN_PAUSED | IOP__CONN_PEER_EOF | IOP__CONN_CLOSING |
                         IOP__CONN_LINGER));
}

int iop__connset_done(const struct iop__connset *set, iop_conn *c)
{
    (void)set;
    return c->out.bytes == 0 && !(c->flags & IOP__CONN_LINGER) &&
           (c->flags & (IOP__CONN_CLOSING | IOP__CONN_PEER_EOF)) &&
           !iop__conn_last_words(c);
}

/* ---- closing --------------------------------------------------------------------- */

static void unkick(struct iop__connset *set, iop_conn *c)
{
    for (size_t i = 0; i < set->nkicked; i++)
        if (set->kicked[i] == c)
            set->kicked[i] = NULL;
    c->flags &= ~IOP__CONN_KICKED;
}

void iop__connset_close(struct iop__connset *set, iop_conn *c, int err)
{
    if (c->flags & IOP__CONN_GONE)
        return;
    iop__conn_notify_close(c, err);
    if (set->mbox) /* on_close has returned: nothing can be posted to c now */
        iop__mailbox_purge(set->mbox, c);
    if (c->flags & IOP__CONN_KICKED)
        unkick(set, c);
    iop__connlist_remove((c->flags & IOP__CONN_LINGER) ? &set->lingering : &set->active, c);
    c->flags |= IOP__CONN_GONE;
    set->nconns--;
    iop__conn_close_line(c);
    set->ops->release(set, c);
}

void iop__connset_finish(struct iop__connset *set, iop_conn *c)
{
    /* on_close before our FIN: a peer that sees its end of stream must find
     * the service done with it (chat: its leave said before any later line
     * of another member). */
    iop__conn_notify_close(c, 0);
    if ((c->flags & IOP__CONN_PEER_EOF) || shutdown(c->fd, SHUT_WR) != 0) {
        iop__connset_close(set, c, 0);
        return;
    }
    iop__connlist_remove(&set->active, c);
    c->flags |= IOP__CONN_LINGER;
    c->flags &= ~IOP__CONN_PAUSED;
    c->deadline = set->now + (uint64_t)set->pol->linger_ms;
    iop__connlist_append(&set->lingering, c); /* the same time for all: deadline order */
    iop__buf_free(&c->in);
    int r = set->ops->discard_input(set, c);
    if (r != 0) {
        iop__connset_close(set, c, 0);
        return;
    }
    schedule(set);
}

int iop__connset_overflowed(struct iop__connset *set, iop_conn *c)
{
    if (!(c->flags & IOP__CONN_OVERFLOW))
        return 0;
    iop__connset_close(set, c, -ENOBUFS); /* "not reading": iop__conn_report_close() */
    return 1;
}

/* ---- posts --------------------------------------------------------------------------- */

/* Output given to c outside its own I/O (a post, maybe inside another
 * connection's callback with the service's lock held): only noted here,
 * settled at the end of the turn, one write for all that was posted. */
void iop__connset_kick(iop_conn *c, void *arg)
{
    struct iop__connset *set = arg;
    if (c->flags & IOP__CONN_KICKED)
        return;
    if (set->nkicked == set->kickcap) {
        size_t cap = set->kickcap ? set->kickcap * 2 : 16;
        iop_conn **k = realloc(set->kicked, cap * sizeof *k);
        if (!k)
            return; /* settled at its next I/O instead */
        set->kicked = k;
        set->kickcap = cap;
    }
    if (set->nkicked == 0 && set->ops->kicked)
        set->ops->kicked(set);
    set->kicked[set->nkicked++] = c;
    c->flags |= IOP__CONN_KICKED;
}

void iop__connset_run_kicked(struct iop__connset *set)
{
    /* In the order kicked; settling may close (an entry becomes NULL) or
     * kick more (appended, run in this same pass). */
    for (size_t i = 0; i < set->nkicked; i++) {
        iop_conn *c = set->kicked[i];
        if (!c)
            continue;
        set->kicked[i] = NULL;
        c->flags &= ~IOP__CONN_KICKED;
        if (!iop__connset_overflowed(set, c))
            set->ops->settle(set, c);
    }
    set->nkicked = 0;
}

/* ---- stopping ------------------------------------------------------------------------ */

void iop__connset_stop_conn(struct iop__connset *set, iop_conn *c)
{
    iop__conn_eof(c); /* as the blocking path: the stop ends the input */
    iop_close(c);
    set->ops->settle(set, c);
}

void iop__connset_drain_expired(struct iop__connset *set)
{
    if (set->nconns > 0)
        iop_report(set->s, IOP_LOG_INFO, "%zu connections still busy after %d ms; "
                   "closing them", set->nconns, set->pol->drain_ms);
    while (set->active.head)
        iop__connset_close(set, set->active.head, -ECANCELED);
    while (set->lingering.head)
        iop__connset_close(set, set->lingering.head, 0);
}
