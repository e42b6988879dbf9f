/* discard (RFC 863): read everything, answer nothing. */
#include "ioplex.h"

static void discard_message(iop_conn *c, const char *msg, size_t len)
{
    (void)c, (void)msg, (void)len;
}

static void discard_datagram(iop_peer *p, const char *msg, size_t len)
{
    (void)p, (void)msg, (void)len;
}

const struct iop_service iop__service_discard = {
    .name = "discard",
    .summary = "read and drop everything (RFC 863)",
    .framing = IOP_FRAMING_RAW,
    .on_message = discard_message,
    .on_datagram = discard_datagram,
};
