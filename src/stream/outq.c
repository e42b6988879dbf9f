#define _GNU_SOURCE
#include "outq.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define CHUNK_SIZE 16384
#define CACHE_MAX 16 /* chunks kept per thread: 256 KiB */
#define OUTQ_IOV 64

/* Every chunk has the same size, so a chunk freed by one connection is
 * reused by the next, from a small per-thread cache. Allocating and
 * freeing big chunks instead made glibc grow and trim the heap with brk()
 * (and fault fresh pages in) on every message: 68% of the event loop's
 * time in a bulk echo. */
struct iop__chunk {
    struct iop__chunk *next;
    size_t off, len; /* unwritten bytes are data[off, len) */
    char data[CHUNK_SIZE];
};

/* q->bytes has one writer, the queue's owner: a relaxed load and store
 * (no locked read-modify-write) keep it readable by other threads. */
static void add_bytes(struct iop__outq *q, size_t n)
{
    atomic_store_explicit(&q->bytes, atomic_load_explicit(&q->bytes, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void sub_bytes(struct iop__outq *q, size_t n)
{
    atomic_store_explicit(&q->bytes, atomic_load_explicit(&q->bytes, memory_order_relaxed) - n,
                          memory_order_relaxed);
}

struct chunk_cache {
    struct iop__chunk *list;
    int n;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *p)
{
    struct chunk_cache *cc = p;
    while (cc->list) {
        struct iop__chunk *c = cc->list;
        cc->list = c->next;
        free(c);
    }
    free(cc);
}

static void cache_init(void) { pthread_key_create(&cache_key, cache_destroy); }

static struct chunk_cache *cache(void)
{
    pthread_once(&cache_once, cache_init);
    struct chunk_cache *cc = pthread_getspecific(cache_key);
    if (!cc && (cc = calloc(1, sizeof *cc)) != NULL && pthread_setspecific(cache_key, cc) != 0) {
        free(cc);
        cc = NULL;
    }
    return cc;
}

static struct iop__chunk *chunk_get(void)
{
    struct chunk_cache *cc = cache();
    struct iop__chunk *c;
    if (cc && cc->list) {
        c = cc->list;
        cc->list = c->next;
        cc->n--;
    } else if (!(c = malloc(sizeof *c))) {
        return NULL;
    }
    c->next = NULL;
    c->off = c->len = 0;
    return c;
}

static void chunk_put(struct iop__chunk *c)
{
    struct chunk_cache *cc = cache();
    if (cc && cc->n < CACHE_MAX) {
        c->next = cc->list;
        cc->list = c;
        cc->n++;
    } else {
        free(c);
    }
}

int iop__outq_reserve(struct iop__outq *q, size_t n)
{
    /* Put enough chunks in this thread's cache for the appends that
     * follow: they then cannot fail (the cache may briefly pass its cap). */
    size_t room = q->tail ? CHUNK_SIZE - q->tail->len : 0;
    if (n <= room)
        return 0;
    size_t need = (n - room + CHUNK_SIZE - 1) / CHUNK_SIZE;
    struct chunk_cache *cc = cache();
    if (!cc)
        return -ENOMEM;
    while ((size_t)cc->n < need) {
        struct iop__chunk *c = malloc(sizeof *c);
        if (!c)
            return -ENOMEM;
        c->next = cc->list;
        cc->list = c;
        cc->n++;
    }
    return 0;
}

int iop__outq_append(struct iop__outq *q, const void *p, size_t n)
{
    while (n > 0) {
        struct iop__chunk *t = q->tail;
        if (!t || t->len == CHUNK_SIZE) {
            struct iop__chunk *c = chunk_get();
            if (!c)
                return -ENOMEM;
            if (t)
                t->next = c;
            else
                q->head = c;
            q->tail = t = c;
        }
        size_t k = CHUNK_SIZE - t->len < n ? CHUNK_SIZE - t->len : n;
        memcpy(t->data + t->len, p, k);
        t->len += k;
        add_bytes(q, k);
        p = (const char *)p + k;
        n -= k;
    }
    return 0;
}

int iop__outq_iov(const struct iop__outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (struct iop__chunk *c = q->head; c && n < max; c = c->next)
        if (c->len > c->off)
            iov[n++] = (struct iovec){c->data + c->off, c->len - c->off};
    return n;
}

void iop__outq_consume(struct iop__outq *q, size_t n)
{
    size_t left = n;
    sub_bytes(q, left);
    struct iop__chunk *c;
    while ((c = q->head) != NULL) {
        size_t k = c->len - c->off < left ? c->len - c->off : left;
        c->off += k;
        left -= k;
        if (c->off < c->len)
            break; /* unwritten bytes: the rest waits */
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        chunk_put(c);
    }
}

ssize_t iop__outq_write(struct iop__outq *q, int fd, int flags)
{
    struct iovec iov[OUTQ_IOV];
    int n = iop__outq_iov(q, iov, OUTQ_IOV);
    if (n == 0)
        return 0;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
    if (w < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    iop__outq_consume(q, (size_t)w);
    return w;
}

void iop__outq_free(struct iop__outq *q)
{
    while (q->head) {
        struct iop__chunk *c = q->head;
        q->head = c->next;
        chunk_put(c);
    }
    q->tail = NULL;
    atomic_store_explicit(&q->bytes, 0, memory_order_relaxed);
}
