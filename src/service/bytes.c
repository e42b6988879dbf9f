/*
 * bytes: the workload of Stevens' server-design comparison (UNP ch. 30).
 * The client sends a decimal count N and a newline; the server answers
 * exactly N bytes ('x'), at most BYTES_MAX. Requests may follow on the
 * same connection. A malformed or oversized count gets one "ERROR" line
 * and the connection is closed.
 *
 * The answer is produced in chunks as the output drains, so a large N
 * never sits in memory whole.
 */
#include "ioplex.h"

#include <stdint.h>
#include <string.h>

#define BYTES_MAX (64u << 20)
#define CHUNK 16384
#define CHUNKS_PER_DRAIN 4

static void bytes_drain(iop_conn *c)
{
    uintptr_t left = (uintptr_t)iop_conn_data(c);
    if (left == 0)
        return;
    char buf[CHUNK];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < CHUNKS_PER_DRAIN && left > 0; i++) {
        size_t n = left < CHUNK ? left : CHUNK;
        if (iop_send(c, buf, n) != 0)
            break;
        left -= n;
    }
    iop_conn_set_data(c, (void *)left);
}

static void bytes_message(iop_conn *c, const char *msg, size_t len)
{
    uint64_t n = 0;
    int ok = len > 0 && len <= 10;
    for (size_t i = 0; ok && i < len; i++) {
        if (msg[i] < '0' || msg[i] > '9')
            ok = 0;
        else
            n = n * 10 + (uint64_t)(msg[i] - '0');
    }
    uintptr_t left = (uintptr_t)iop_conn_data(c);
    if (!ok || n > BYTES_MAX - left) {
        static const char err[] = "ERROR expected a byte count from 0 to 67108864\n";
        iop_send(c, err, sizeof err - 1);
        iop_close(c);
        return;
    }
    iop_conn_set_data(c, (void *)(left + (uintptr_t)n));
    bytes_drain(c);
}

const struct iop_service iop_service_bytes = {
    .name = "bytes",
    .summary = "answer \"N\\n\" with N bytes (Stevens' server-design workload)",
    .framing = IOP_FRAMING_LINE,
    .on_message = bytes_message,
    .on_drain = bytes_drain,
};
