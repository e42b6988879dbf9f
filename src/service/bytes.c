/*
 * bytes: the workload of Stevens' server-design comparison (UNP ch. 30).
 * The client sends a decimal count N and a newline; the server answers
 * exactly N bytes ('x'), N at most BYTES_MAX. Requests may follow on the
 * same connection: each is answered in full, in order.
 *
 * A malformed or oversized count gets one "ERROR" line and the connection
 * is closed, but only once every earlier answer has gone out whole: the
 * client reads its byte counts exactly, and an ERROR in the middle of an
 * answer would be taken for bytes of it. Requests after a bad one are
 * ignored.
 *
 * The answer is produced in chunks as the output drains, so a large N
 * never sits in memory whole; the connection's state is one word (the
 * bytes still owed, and a flag for an ERROR owed after them).
 */
#include "ioplex.h"

#include <stdint.h>
#include <string.h>

#define BYTES_MAX (64u << 20)
#define CHUNK 16384
#define CHUNKS_PER_DRAIN 4
/* The top bit of the state: an ERROR line is owed once the bytes are out. */
#define ERROR_OWED ((uintptr_t)1 << (sizeof(uintptr_t) * 8 - 1))

static void bytes_drain(iop_conn *c)
{
    uintptr_t state = (uintptr_t)iop_conn_data(c);
    uintptr_t left = state & ~ERROR_OWED;
    char buf[CHUNK];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < CHUNKS_PER_DRAIN && left > 0; i++) {
        size_t n = left < CHUNK ? left : CHUNK;
        if (iop_send(c, buf, n) != 0)
            break;
        left -= n;
    }
    if (left == 0 && (state & ERROR_OWED)) {
        static const char err[] = "ERROR expected a byte count from 0 to 67108864\n";
        iop_send(c, err, sizeof err - 1);
        iop_close(c);
        state = 0;
    }
    iop_conn_set_data(c, (void *)(left | (state & ERROR_OWED)));
}

static void bytes_message(iop_conn *c, const char *msg, size_t len)
{
    uintptr_t state = (uintptr_t)iop_conn_data(c);
    if (state & ERROR_OWED)
        return; /* closing after the ERROR: later requests are not answered */
    uint64_t n = 0;
    int ok = len > 0 && len <= 10;
    for (size_t i = 0; ok && i < len; i++) {
        if (msg[i] < '0' || msg[i] > '9')
            ok = 0;
        else
            n = n * 10 + (uint64_t)(msg[i] - '0');
    }
    /* What is owed stays below the flag bit: with 64-bit words, 2^63
     * bytes, which no client reads; with 32-bit ones, 2 GiB pipelined. */
    if (!ok || n > BYTES_MAX || n >= (ERROR_OWED - 1) - state)
        state |= ERROR_OWED;
    else
        state += (uintptr_t)n;
    iop_conn_set_data(c, (void *)state);
    bytes_drain(c);
}

const struct iop_service iop__service_bytes = {
    .name = "bytes",
    .summary = "answer \"N\\n\" with N bytes (Stevens' server-design workload)",
    .framing = IOP_FRAMING_LINE,
    .on_message = bytes_message,
    .on_drain = bytes_drain,
};
