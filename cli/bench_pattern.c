/*
 * The bytes ioplex bench sends. Every message's bytes follow from its key
 * (connection id, sequence number) alone, so the echo is checked against
 * a regenerated copy: nothing sent is kept, and a byte out of place, a
 * message of another connection or a stale one all show as a mismatch.
 */
#include "bench.h"

#include <string.h>

#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)

uint64_t bench_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return x;
}

uint64_t bench_msg_key(uint32_t id, uint64_t seq)
{
    return bench_mix(((uint64_t)id << 40 ^ seq) + GOLDEN);
}

uint32_t bench_msg_size(const struct bench_cfg *cfg, uint64_t key)
{
    if (cfg->size_min == cfg->size_max)
        return cfg->size_min;
    uint64_t span = (uint64_t)cfg->size_max - cfg->size_min + 1;
    return cfg->size_min + (uint32_t)(bench_mix(key ^ UINT64_C(0x5151)) % span);
}

uint32_t bench_framed_len(const struct bench_cfg *cfg, uint32_t size)
{
    switch (cfg->framing) {
    case IOP_FRAMING_LINE: return size + 1;
    case IOP_FRAMING_LEN32: return size + 4;
    default: return size;
    }
}

/* Word w of pattern `key`; byte i is byte i%8 of word i/8. */
static inline uint64_t word(uint64_t key, uint64_t w)
{
    return bench_mix(key + (w + 1) * GOLDEN);
}

void bench_pattern(uint64_t key, uint64_t off, uint8_t *dst, size_t n)
{
    while (n > 0) {
        uint64_t w = word(key, off / 8);
        unsigned from = (unsigned)(off % 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (from == 0 && n >= 8) { /* the common case: whole words */
            memcpy(dst, &w, 8);    /* the same bytes as the loop below */
            dst += 8;
            off += 8;
            n -= 8;
            continue;
        }
#endif
        for (unsigned b = from; b < 8 && n > 0; b++, n--, off++)
            *dst++ = (uint8_t)(w >> (8 * b));
    }
}

void bench_frame_bytes(const struct bench_cfg *cfg, uint64_t key, uint32_t size,
                       uint64_t off, uint8_t *dst, size_t n)
{
    if (cfg->framing == IOP_FRAMING_LEN32) {
        uint8_t hdr[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16),
                          (uint8_t)(size >> 8), (uint8_t)size};
        while (n > 0 && off < 4) {
            *dst++ = hdr[off++];
            n--;
        }
        if (n > 0)
            bench_pattern(key, off - 4, dst, n);
        return;
    }
    if (cfg->framing == IOP_FRAMING_LINE) {
        size_t body = off < size ? size - off : 0;
        if (body > n)
            body = n;
        bench_pattern(key, off, dst, body);
        /* Printable and never '\n' or '\r': '0' .. 'o'. */
        for (size_t i = 0; i < body; i++)
            dst[i] = (uint8_t)(0x30 + (dst[i] & 0x3f));
        if (body < n)
            dst[body] = '\n'; /* n - body is 1: the frame ends here */
        return;
    }
    bench_pattern(key, off, dst, n);
}

void bench_dgram_bytes(uint32_t id, uint64_t seq, uint32_t size, uint8_t *dst)
{
    uint64_t key = bench_msg_key(id, seq);
    if (size >= 8) {
        for (int i = 0; i < 8; i++)
            dst[i] = (uint8_t)(seq >> (8 * i));
        bench_pattern(key, 8, dst + 8, size - 8);
    } else {
        bench_pattern(key, 0, dst, size);
    }
}
