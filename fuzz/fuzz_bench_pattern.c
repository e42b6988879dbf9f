/*
 * What ioplex bench sends and checks (cli/bench_pattern.c): bench never
 * keeps what it sent, it regenerates the expected bytes of an answer
 * piece by piece, at the offsets the reads happen to end at.
 *
 * Properties:
 *  - bench_frame_bytes() over [off, off+n) in random pieces equals one
 *    call over the whole framed message (and bench_pattern likewise);
 *  - the framed message is what a server decodes as exactly one message
 *    of `size` bytes: iop_frame_next() (the library's own framing) finds
 *    one frame covering it all, payload = the pattern; a line message has
 *    no '\n' or '\r' inside;
 *  - bench_framed_len() is that frame's length;
 *  - a datagram of 8 bytes or more starts with its sequence number
 *    (little-endian), which is how answers are matched to requests;
 *  - bench_msg_size() stays within [size_min, size_max].
 *
 * Input: framing, size (2 bytes), key (8 bytes), split seed, then extras.
 */
#include "fuzz_util.h"
#include "bench.h"

#include <string.h>

#define SIZE_LIMIT 70000

static uint8_t whole[SIZE_LIMIT + 4 + 1], pieces[SIZE_LIMIT + 4 + 1];

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len)
{
    struct fuzz_in in = {bytes, len};
    struct bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.framing = (enum iop_framing)(fuzz_byte(&in) % 3);
    uint32_t size = fuzz_u16(&in) % SIZE_LIMIT;
    uint64_t key = 0;
    for (int i = 0; i < 8; i++)
        key = key << 8 | fuzz_byte(&in);
    uint64_t seed = (uint64_t)fuzz_byte(&in) * 0x9E3779B97F4A7C15u + 1;

    /* The framed message, whole and in pieces. */
    uint32_t framed = bench_framed_len(&cfg, size);
    FUZZ_CHECK(framed <= sizeof whole);
    bench_frame_bytes(&cfg, key, size, 0, whole, framed);
    memset(pieces, 0xEE, sizeof pieces);
    for (size_t off = 0; off < framed;) {
        size_t n = fuzz_chunk(&seed, framed - off);
        bench_frame_bytes(&cfg, key, size, off, pieces + off, n);
        off += n;
    }
    FUZZ_CHECK(memcmp(whole, pieces, framed) == 0);
    FUZZ_CHECK(pieces[framed] == 0xEE); /* nothing past the end */

    /* The server's view: one frame, the whole message. */
    if (size > 0 || cfg.framing != IOP_FRAMING_RAW) {
        struct iop_frame f;
        int r = iop_frame_next(cfg.framing, IOP_MAX_FRAME_DEFAULT * 2,
                               (const char *)whole, framed, &f);
        FUZZ_CHECK(r == 1);
        FUZZ_CHECK(f.frame_len == framed && f.payload_len == size);
        if (cfg.framing == IOP_FRAMING_LINE)
            for (uint32_t i = 0; i < size; i++)
                FUZZ_CHECK(whole[i] != '\n' && whole[i] != '\r');
        if (cfg.framing != IOP_FRAMING_LINE) {
            /* The payload is the pattern itself. */
            bench_pattern(key, 0, pieces, size);
            FUZZ_CHECK(memcmp(whole + f.payload_off, pieces, size) == 0);
        }
    }

    /* The endless stream pattern, from any offset, in pieces. */
    uint64_t base = (uint64_t)fuzz_u16(&in) * 4099 + fuzz_byte(&in);
    size_t n = size < 4096 ? size : 4096;
    bench_pattern(key, base, whole, n);
    for (size_t off = 0; off < n;) {
        size_t k = fuzz_chunk(&seed, n - off);
        bench_pattern(key, base + off, pieces + off, k);
        off += k;
    }
    FUZZ_CHECK(memcmp(whole, pieces, n) == 0);

    /* Datagrams: tagged with their sequence number. */
    uint32_t id = fuzz_u16(&in);
    uint64_t seq = key ^ base;
    uint32_t dsize = size % (BENCH_DGRAM_MAX + 1);
    bench_dgram_bytes(id, seq, dsize, whole);
    if (dsize >= 8) {
        uint64_t got = 0;
        for (int i = 7; i >= 0; i--)
            got = got << 8 | whole[i];
        FUZZ_CHECK(got == seq);
    }

    /* Random sizes stay in range. */
    cfg.size_min = fuzz_u16(&in);
    cfg.size_max = cfg.size_min + fuzz_u16(&in) * 1000u;
    uint32_t s = bench_msg_size(&cfg, bench_msg_key(id, seq));
    FUZZ_CHECK(s >= cfg.size_min && s <= cfg.size_max);
    return 0;
}
