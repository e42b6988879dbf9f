/*
 * Failure episodes: report once, end once caught up.
 */
#ifndef IOP_BASE_EPISODE_H
#define IOP_BASE_EPISODE_H


/* ---- failure episodes ---------------------------------------------------- */

/* A failure that repeats until it passes (EMFILE at accept(), EAGAIN at
 * fork() or pthread_create()) is one episode: reported when it starts (or
 * changes kind), and its end once, when the server has caught up: it has
 * succeeded since the last failure and nothing is left waiting. Not at
 * the first success: at a limit each freed slot lets one through before
 * the next fails, and a line for each would be a flood. */
struct iop__episode {
    int err;  /* the failure last reported, 0 if none */
    int took; /* a success since then */
    unsigned long count; /* failures in this episode */
};
/* A failure: 1 if it starts an episode (or a new kind): report it. */
static inline int iop__episode_fail(struct iop__episode *e, int err)
{
    int fresh = err != e->err;
    e->err = err;
    e->took = 0;
    e->count = fresh ? 1 : e->count + 1;
    return fresh;
}
static inline void iop__episode_ok(struct iop__episode *e)
{
    if (e->err)
        e->took = 1;
}
/* 1 if the episode can end: it has had a success since. The caller checks
 * that nothing waits (cheap test first), then reports and ends it. */
static inline int iop__episode_may_end(const struct iop__episode *e)
{
    return e->err && e->took;
}
static inline void iop__episode_end(struct iop__episode *e)
{
    e->err = 0;
    e->took = 0;
    e->count = 0;
}

#endif
