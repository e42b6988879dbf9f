/*
 * The connection as a service sees it: an input buffer cut into messages
 * by the framing layer, and an output queue that iop_send() appends to.
 * How bytes move in and out is the model's business (blocking.c for the
 * blocking models).
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

void iop__conn_init(iop_conn *c, iop_server *s, int fd,
                    const struct sockaddr_storage *peer, socklen_t peerlen)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->server = s;
    c->svc = s->svc;
    c->framing = s->framing;
    c->max_frame = s->max_frame;
    c->id = atomic_fetch_add(&s->next_conn_id, 1) + 1;
    if (peer && peerlen <= sizeof c->peer) {
        memcpy(&c->peer, peer, peerlen);
        c->peerlen = peerlen;
    }
    iop_sockaddr_format((struct sockaddr *)&c->peer, c->peerlen, c->peer_name,
                        sizeof c->peer_name);
}

int iop__conn_dispatch(iop_conn *c)
{
    while (!c->closing && iop_buf_used(&c->in) > 0) {
        struct iop_frame f;
        int r = iop_frame_next(c->framing, c->max_frame, iop_buf_head(&c->in),
                               iop_buf_used(&c->in), &f);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (c->svc->on_message)
            c->svc->on_message(c, iop_buf_head(&c->in) + f.payload_off,
                               f.payload_len);
        iop_buf_consume(&c->in, f.frame_len);
    }
    return 0;
}

void iop__conn_eof(iop_conn *c)
{
    size_t n = iop_buf_used(&c->in);
    if (c->closing || n == 0 || c->framing != IOP_FRAMING_LINE)
        return;
    if (n <= c->max_frame && c->svc->on_message)
        c->svc->on_message(c, iop_buf_head(&c->in), n);
    iop_buf_consume(&c->in, n);
}

void iop__conn_release(iop_conn *c)
{
    iop_buf_free(&c->in);
    iop_buf_free(&c->out);
}

int iop_send(iop_conn *c, const void *data, size_t len)
{
    if (c->closing || c->error)
        return -EPIPE;
    return iop_buf_append(&c->out, data, len);
}

int iop_send_frame(iop_conn *c, const void *msg, size_t len)
{
    if (c->closing || c->error)
        return -EPIPE;
    if (c->framing == IOP_FRAMING_LEN32 && len > UINT32_MAX)
        return -EMSGSIZE;
    char hdr[4];
    size_t hn = iop_frame_header(c->framing, len, hdr);
    size_t tn = c->framing == IOP_FRAMING_LINE ? 1 : 0;
    /* Reserve the whole frame first so a failure queues nothing. */
    if (!iop_buf_reserve(&c->out, hn + len + tn))
        return -ENOMEM;
    iop_buf_append(&c->out, hdr, hn);
    iop_buf_append(&c->out, msg, len);
    iop_buf_append(&c->out, "\n", tn);
    return 0;
}

void iop_close(iop_conn *c) { c->closing = 1; }

const struct sockaddr *iop_conn_peer(const iop_conn *c, socklen_t *len)
{
    if (len)
        *len = c->peerlen;
    return (const struct sockaddr *)&c->peer;
}

const char *iop_conn_peer_name(const iop_conn *c) { return c->peer_name; }
uint64_t iop_conn_id(const iop_conn *c) { return c->id; }
void *iop_conn_data(const iop_conn *c) { return c->data; }
void iop_conn_set_data(iop_conn *c, void *data) { c->data = data; }
iop_server *iop_conn_server(const iop_conn *c) { return c->server; }
