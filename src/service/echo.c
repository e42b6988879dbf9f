/* echo (RFC 862): every byte received is sent back, until the peer closes. */
#include "ioplex.h"

static void echo_message(iop_conn *c, const char *msg, size_t len)
{
    /* With raw framing this is the bytes as read; with line or len32
     * framing the message goes back framed the same way. */
    if (iop_send_frame(c, msg, len) != 0)
        iop_close(c);
}

static void echo_datagram(iop_peer *p, const char *msg, size_t len)
{
    iop_peer_send(p, msg, len);
}

const struct iop_service iop__service_echo = {
    .name = "echo",
    .summary = "send every byte back (RFC 862)",
    .framing = IOP_FRAMING_RAW,
    .on_message = echo_message,
    .on_datagram = echo_datagram,
};
