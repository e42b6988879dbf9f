/*
 * Framing: TCP is a byte stream, so messages are cut out of it here.
 * iop_frame_next() is a pure function of the bytes received so far; it
 * gives the same messages however the stream was split into reads.
 */
#include "ioplex.h"

#include <errno.h>
#include <string.h>

static int frame_line(size_t max, const char *data, size_t len,
                      struct iop_frame *f)
{
    /* A payload of max bytes may be followed by "\r\n": look no further. */
    size_t limit = max > SIZE_MAX - 2 ? SIZE_MAX : max + 2;
    size_t window = len < limit ? len : limit;
    const char *nl = memchr(data, '\n', window);
    if (!nl)
        return len >= limit ? -EMSGSIZE : 0;
    size_t n = (size_t)(nl - data);
    f->payload_off = 0;
    f->frame_len = n + 1;
    if (n > 0 && data[n - 1] == '\r')
        n--;
    if (n > max)
        return -EMSGSIZE;
    f->payload_len = n;
    return 1;
}

static int frame_len32(size_t max, const char *data, size_t len,
                       struct iop_frame *f)
{
    if (len < 4)
        return 0;
    const unsigned char *p = (const unsigned char *)data;
    uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                 (uint32_t)p[2] << 8 | (uint32_t)p[3];
    if (n > max)
        return -EMSGSIZE;
    if (len - 4 < n)
        return 0;
    f->payload_off = 4;
    f->payload_len = n;
    f->frame_len = 4 + (size_t)n;
    return 1;
}

int iop_frame_next(enum iop_framing framing, size_t max, const char *data,
                   size_t len, struct iop_frame *f)
{
    switch (framing) {
    case IOP_FRAMING_RAW:
        if (len == 0)
            return 0;
        f->payload_off = 0;
        f->payload_len = len < max ? len : max;
        f->frame_len = f->payload_len;
        return 1;
    case IOP_FRAMING_LINE:
        return frame_line(max, data, len, f);
    case IOP_FRAMING_LEN32:
        return frame_len32(max, data, len, f);
    }
    return -EINVAL;
}

size_t iop_frame_header(enum iop_framing framing, size_t payload_len,
                        char hdr[4])
{
    if (framing != IOP_FRAMING_LEN32)
        return 0;
    hdr[0] = (char)(payload_len >> 24);
    hdr[1] = (char)(payload_len >> 16);
    hdr[2] = (char)(payload_len >> 8);
    hdr[3] = (char)payload_len;
    return 4;
}

static const char *const framing_names[] = {
    [IOP_FRAMING_RAW] = "raw",
    [IOP_FRAMING_LINE] = "line",
    [IOP_FRAMING_LEN32] = "len32",
};

const char *iop_framing_name(enum iop_framing framing)
{
    if ((unsigned)framing < sizeof framing_names / sizeof framing_names[0])
        return framing_names[framing];
    return "?";
}

int iop_framing_parse(const char *name, enum iop_framing *out)
{
    for (unsigned i = 0; i < sizeof framing_names / sizeof framing_names[0]; i++) {
        if (strcmp(name, framing_names[i]) == 0) {
            *out = (enum iop_framing)i;
            return 0;
        }
    }
    return -EINVAL;
}
