/*
 * bench --tls: what a connection does between its TCP connect and its
 * first message (the handshake, timed apart from the messages), and its
 * bytes through OpenSSL on the thread's epoll loop. OpenSSL's "wait for
 * POLLIN / POLLOUT" becomes the connection's epoll interest; the sockets
 * are non-blocking and OpenSSL reads and writes them itself.
 *
 * --tls-resume: each thread keeps the session of its first connection
 * (once its ticket has come) and offers it on every later one, so a
 * connect-mode run measures resumed handshakes (SSL_session_reused says
 * which were).
 */
#define _GNU_SOURCE
#include "bench_conn.h"
#include "tls_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

static void keep_why(struct wctx *w, const char *why)
{
    snprintf(w->bw->c.tls_why, sizeof w->bw->c.tls_why, "%s", why);
}

static void want_events(struct wctx *w, struct bconn *c, short want)
{
    struct epoll_event ev = {.events = want == POLLOUT ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->out_armed = want == POLLOUT;
}

int btls_start(struct wctx *w, struct bconn *c)
{
    char why[TLS_WHY_LEN];
    c->ssl = tls_client_ssl(w->cfg->tls_ctx, c->fd, w->cfg->tls_name, why);
    if (!c->ssl) {
        keep_why(w, why);
        return -ENOMEM;
    }
    if (w->session)
        SSL_set_session(c->ssl, w->session);
    c->t_hs = w->now;
    return 0;
}

int btls_handshake(struct wctx *w, struct bconn *c, int *err)
{
    char why[TLS_WHY_LEN];
    short want = POLLIN;
    *err = 0;
    int r = tls_client_handshake(c->ssl, &want, err, why);
    if (r == TLS_WANT) {
        want_events(w, c, want);
        return 0;
    }
    if (r != 1) {
        keep_why(w, why);
        return -1;
    }
    w->now = bench_now_ns();
    if (w->measuring) {
        w->bw->c.handshakes++;
        w->bw->c.resumed += SSL_session_reused(c->ssl) != 0;
        iop__hist_record(&w->bw->hshist, (uint64_t)(w->now - c->t_hs));
    }
    if (c->out_armed)
        conn_arm_out(w, c, 0);
    else
        want_events(w, c, POLLIN);
    return 1;
}

/* A failed read or write: -1 with errno as the loop reads it. */
static ssize_t failed(struct wctx *w, int r, int err, const char *why)
{
    if (r == TLS_WANT) {
        errno = EAGAIN;
        return -1;
    }
    if (!err)
        keep_why(w, why);
    errno = err ? err : EPROTO;
    return -1;
}

ssize_t btls_recv(struct wctx *w, struct bconn *c, void *buf, size_t len)
{
    char why[TLS_WHY_LEN];
    short want;
    int err;
    ssize_t r = tls_client_read(c->ssl, buf, len, &want, &err, why);
    if (r > 0 || r == TLS_EOF)
        return r;
    if (r == TLS_TRUNCATED)
        return 0; /* the server closed: counted as the mode counts a close */
    return failed(w, (int)r, err, why);
}

ssize_t btls_send(struct wctx *w, struct bconn *c, const void *buf, size_t len)
{
    char why[TLS_WHY_LEN];
    short want;
    int err;
    ssize_t r = tls_client_write(c->ssl, buf, len, &want, &err, why);
    return r > 0 ? r : failed(w, (int)r, err, why);
}

int btls_pending(const struct bconn *c)
{
    return c->ssl && SSL_pending(c->ssl) > 0;
}

void btls_close(struct wctx *w, struct bconn *c, int clean)
{
    if (!c->ssl)
        return;
    if (w->cfg->tls_resume && !w->session && SSL_is_init_finished(c->ssl)) {
        /* TLS 1.3 sends the ticket after the handshake: only a session
         * that has one can be resumed. */
        SSL_SESSION *s = SSL_get1_session(c->ssl);
        if (s && SSL_SESSION_is_resumable(s))
            w->session = s;
        else
            SSL_SESSION_free(s);
    }
    if (clean && SSL_is_init_finished(c->ssl)) {
        short want;
        int err;
        char why[TLS_WHY_LEN];
        tls_client_close_notify(c->ssl, &want, &err, why); /* best effort: one record */
    }
    SSL_free(c->ssl);
    c->ssl = NULL;
}
