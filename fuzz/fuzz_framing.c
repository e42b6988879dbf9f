/*
 * iop_frame_next() for raw, line and len32 framing, with many limits.
 *
 * Properties, not only "no crash":
 *  - every frame lies within the input, advances it, and carries at most
 *    max bytes; a line frame ends with '\n' and holds none; a len32 frame
 *    is its header's length;
 *  - the same bytes fed in random splits (as recv() hands them over, with
 *    the unconsumed tail kept between reads, as a connection does) give
 *    the same frames and the same error at the same place as one
 *    decode of the whole input (raw: the same bytes, in frames of at
 *    most max);
 *  - iop_frame_header() + payload (+ "\n") decodes back to the payload.
 *
 * Input: framing byte, max-frame byte, split-seed byte, then the stream.
 */
#include "fuzz_util.h"
#include "ioplex.h"

#include <errno.h>
#include <string.h>

#define MAX_FRAMES 8192

struct decoded {
    size_t n;
    size_t off[MAX_FRAMES], len[MAX_FRAMES]; /* payload, in the whole input */
    int err;                                 /* 0 or what ended decoding */
    size_t consumed;                         /* bytes used by whole frames */
};

/* Check one frame found at data[0, len) and return its length. */
static size_t check_frame(enum iop_framing fr, size_t max, const char *data,
                          size_t len, const struct iop_frame *f)
{
    FUZZ_CHECK(f->frame_len > 0 && f->frame_len <= len);
    FUZZ_CHECK(f->payload_off <= f->frame_len);
    FUZZ_CHECK(f->payload_len <= f->frame_len - f->payload_off);
    FUZZ_CHECK(f->payload_len <= max);
    switch (fr) {
    case IOP_FRAMING_RAW:
        FUZZ_CHECK(f->payload_off == 0 && f->frame_len == f->payload_len);
        FUZZ_CHECK(f->payload_len == (len < max ? len : max));
        break;
    case IOP_FRAMING_LINE:
        FUZZ_CHECK(data[f->frame_len - 1] == '\n');
        FUZZ_CHECK(!memchr(data, '\n', f->frame_len - 1));
        FUZZ_CHECK(f->payload_off == 0);
        /* The payload is the line without "\n" and one "\r" before it. */
        FUZZ_CHECK(f->frame_len - f->payload_len ==
                   (f->frame_len >= 2 && data[f->frame_len - 2] == '\r' ? 2u : 1u));
        break;
    case IOP_FRAMING_LEN32: {
        const unsigned char *p = (const unsigned char *)data;
        uint32_t n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                     (uint32_t)p[2] << 8 | p[3];
        FUZZ_CHECK(f->payload_off == 4 && f->payload_len == n);
        FUZZ_CHECK(f->frame_len == 4 + (size_t)n);
        break;
    }
    }
    return f->frame_len;
}

static void decode_whole(enum iop_framing fr, size_t max, const char *data,
                         size_t len, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    size_t off = 0;
    while (d->n < MAX_FRAMES) {
        struct iop_frame f;
        int r = iop_frame_next(fr, max, data + off, len - off, &f);
        FUZZ_CHECK(r == 1 || r == 0 || r == -EMSGSIZE);
        if (r == -EMSGSIZE) {
            FUZZ_CHECK(fr != IOP_FRAMING_RAW);
            d->err = r;
            break;
        }
        if (r == 0) {
            /* Raw needs more only when there is nothing. */
            FUZZ_CHECK(fr != IOP_FRAMING_RAW || off == len);
            break;
        }
        check_frame(fr, max, data + off, len - off, &f);
        d->off[d->n] = off + f.payload_off;
        d->len[d->n] = f.payload_len;
        d->n++;
        off += f.frame_len;
    }
    d->consumed = off;
}

/* The connection's way: a buffer that receives chunks and keeps the
 * unconsumed tail (always at offset 0 here: offsets in `acc` map back to
 * the whole input by adding `base`). */
static void decode_split(enum iop_framing fr, size_t max, const char *data,
                         size_t len, uint64_t seed, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    size_t have = 0, base = 0; /* data[base, have) is buffered */
    while (have < len && d->n < MAX_FRAMES && !d->err) {
        have += fuzz_chunk(&seed, len - have);
        /* The tail is copied so ASan sees any read past what was received. */
        size_t n = have - base;
        char *acc = malloc(n ? n : 1);
        FUZZ_CHECK(acc);
        memcpy(acc, data + base, n);
        size_t used = 0;
        while (d->n < MAX_FRAMES) {
            struct iop_frame f;
            int r = iop_frame_next(fr, max, acc + used, n - used, &f);
            if (r < 0) {
                d->err = r;
                break;
            }
            if (r == 0)
                break;
            check_frame(fr, max, acc + used, n - used, &f);
            d->off[d->n] = base + used + f.payload_off;
            d->len[d->n] = f.payload_len;
            d->n++;
            used += f.frame_len;
        }
        free(acc);
        base += used;
    }
    d->consumed = base;
}

/* A payload framed again decodes back to itself. */
static void check_reencode(enum iop_framing fr, size_t max, const char *p, size_t n)
{
    if (fr == IOP_FRAMING_RAW || n == 0 || n > 4096)
        return;
    /* A line payload ending in '\r' cannot be sent as a line: the '\r'
     * would be taken for half of "\r\n" (documented in ioplex.h). */
    if (fr == IOP_FRAMING_LINE && p[n - 1] == '\r')
        return;
    char buf[4 + 4096 + 1];
    char hdr[4];
    size_t h = iop_frame_header(fr, n, hdr);
    FUZZ_CHECK(h == (fr == IOP_FRAMING_LEN32 ? 4u : 0u));
    memcpy(buf, hdr, h);
    memcpy(buf + h, p, n);
    size_t total = h + n;
    if (fr == IOP_FRAMING_LINE)
        buf[total++] = '\n';
    struct iop_frame f;
    FUZZ_CHECK(iop_frame_next(fr, max, buf, total, &f) == 1);
    FUZZ_CHECK(f.frame_len == total && f.payload_len == n);
    FUZZ_CHECK(memcmp(buf + f.payload_off, p, n) == 0);
}

static struct decoded whole, split;

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
    struct fuzz_in in = {bytes, size};
    enum iop_framing fr = (enum iop_framing)(fuzz_byte(&in) % 3);
    size_t max = fuzz_max_frame(&in);
    uint64_t seed = (uint64_t)fuzz_byte(&in) * 0x9E3779B97F4A7C15u + 1;
    const char *data = (const char *)in.p;
    size_t len = in.n;

    decode_whole(fr, max, data, len, &whole);
    decode_split(fr, max, data, len, seed, &split);

    if (fr == IOP_FRAMING_RAW) {
        /* Raw frames depend on the reads; their bytes do not: both decodes
         * cover the input in order, in frames of at most max. */
        if (whole.n < MAX_FRAMES)
            FUZZ_CHECK(whole.consumed == len);
        if (split.n < MAX_FRAMES)
            FUZZ_CHECK(split.consumed == len);
        size_t at = 0;
        for (size_t i = 0; i < split.n; i++) {
            FUZZ_CHECK(split.off[i] == at);
            at += split.len[i];
        }
        FUZZ_CHECK(at == split.consumed);
        return 0;
    }
    /* Line and len32: the reads must not matter at all. */
    if (whole.n < MAX_FRAMES && split.n < MAX_FRAMES) {
        FUZZ_CHECK(whole.n == split.n);
        FUZZ_CHECK(whole.err == split.err);
        FUZZ_CHECK(whole.consumed == split.consumed);
    }
    size_t n = whole.n < split.n ? whole.n : split.n;
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(whole.off[i] == split.off[i] && whole.len[i] == split.len[i]);
        check_reencode(fr, max, data + whole.off[i], whole.len[i]);
    }
    return 0;
}
