/*
 * What the fuzz targets share: a reader over the fuzzer's bytes (so one
 * input decides the parameters and the data), and a check that aborts
 * with a line saying which property broke (libFuzzer then keeps the input).
 */
#ifndef IOPLEX_FUZZ_UTIL_H
#define IOPLEX_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, \
                    #cond);                                                     \
            abort();                                                            \
        }                                                                       \
    } while (0)

struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* One byte off the front; 0 once the input is used up. */
static inline uint8_t fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t fuzz_u16(struct fuzz_in *in)
{
    uint32_t hi = fuzz_byte(in);
    return hi << 8 | fuzz_byte(in);
}

/* A small deterministic generator for split points, seeded from the input
 * (xorshift64*): the same input always splits the same way. */
static inline uint64_t fuzz_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(0x2545F4914F6CDD1D);
}

/* A length for the next read: mostly small (1..16), sometimes large, as
 * recv() returns in practice. */
static inline size_t fuzz_chunk(uint64_t *s, size_t left)
{
    uint64_t r = fuzz_rand(s);
    size_t n = (r & 3) == 0 ? (size_t)(r >> 8) % 4096 + 1 : (size_t)(r >> 8) % 16 + 1;
    return n < left ? n : left;
}

/* A --max-frame for the framing targets: small values (where the limits
 * are hit), the server's default and the extremes of size_t and len32. */
static inline size_t fuzz_max_frame(struct fuzz_in *in)
{
    static const size_t special[] = {
        65536, 65535, 1u << 30, UINT32_MAX - 1, UINT32_MAX, SIZE_MAX - 2,
        SIZE_MAX - 1, SIZE_MAX,
    };
    uint8_t b = fuzz_byte(in);
    if (b >= 256 - sizeof special / sizeof special[0])
        return special[b - (256 - sizeof special / sizeof special[0])];
    return (size_t)b % 64 + 1; /* 1 .. 64 */
}

#endif
