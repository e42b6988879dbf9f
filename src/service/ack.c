/*
 * ack: the course's exchange, and the default service. The server prints
 * "Here is the message: <line>", answers "I got your message" and ends
 * the connection, as the lab's server.c does.
 */
#include "ioplex.h"

#define ACK "I got your message"

static void ack_message(iop_conn *c, const char *msg, size_t len)
{
    iop_report(iop_conn_server(c), IOP_LOG_OUTPUT, "Here is the message: %.*s",
               (int)len, msg);
    iop_send_frame(c, ACK, sizeof ACK - 1);
    iop_close(c);
}

static void ack_datagram(iop_peer *p, const char *msg, size_t len)
{
    /* A datagram is one message: drop the newline a line-reading client
     * typed, as line framing does for streams. */
    if (len > 0 && msg[len - 1] == '\n')
        len--;
    if (len > 0 && msg[len - 1] == '\r')
        len--;
    iop_report(iop_peer_server(p), IOP_LOG_OUTPUT, "Here is the message: %.*s",
               (int)len, msg);
    iop_peer_send(p, ACK "\n", sizeof ACK);
}

const struct iop_service iop__service_ack = {
    .name = "ack",
    .summary = "print each message, answer \"I got your message\" (the course's server)",
    .framing = IOP_FRAMING_LINE,
    .flags = IOP_SERVICE_AMPLIFIES, /* 19 bytes, whatever came */
    .on_message = ack_message,
    .on_datagram = ack_datagram,
};
