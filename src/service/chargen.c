/*
 * chargen (RFC 864): an endless stream of 72-character lines, each
 * starting one character further along the 95 printable ASCII characters,
 * until the peer closes. Input is discarded. A producer: it writes more
 * whenever the output queue drains (on_drain), so a client that reads
 * slowly slows it down instead of growing the server's memory.
 */
#include "ioplex.h"

#include <stdint.h>

#define LINE 72
#define PRINTABLE 95 /* ' ' through '~' */
#define LINES_PER_DRAIN 64
#define DATAGRAM_LINES 6 /* RFC 864 answers a datagram with at most 512 bytes */

static size_t put_lines(char *out, unsigned first, unsigned count)
{
    size_t n = 0;
    for (unsigned l = 0; l < count; l++) {
        for (unsigned i = 0; i < LINE; i++)
            out[n++] = (char)(' ' + (first + l + i) % PRINTABLE);
        out[n++] = '\r';
        out[n++] = '\n';
    }
    return n;
}

static void chargen_drain(iop_conn *c)
{
    char buf[LINES_PER_DRAIN * (LINE + 2)];
    unsigned first = (unsigned)(uintptr_t)iop_conn_data(c);
    iop_send(c, buf, put_lines(buf, first, LINES_PER_DRAIN));
    iop_conn_set_data(c, (void *)(uintptr_t)((first + LINES_PER_DRAIN) % PRINTABLE));
}

static void chargen_message(iop_conn *c, const char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
}

static void chargen_datagram(iop_peer *p, const char *msg, size_t len)
{
    (void)msg, (void)len;
    char buf[DATAGRAM_LINES * (LINE + 2)];
    iop_peer_send(p, buf, put_lines(buf, 0, DATAGRAM_LINES));
}

const struct iop_service iop__service_chargen = {
    .name = "chargen",
    .summary = "an endless stream of text lines (RFC 864)",
    .framing = IOP_FRAMING_RAW,
    .flags = IOP_SERVICE_AMPLIFIES, /* 444 bytes, whatever came */
    .on_message = chargen_message,
    .on_drain = chargen_drain,
    .on_datagram = chargen_datagram,
};
