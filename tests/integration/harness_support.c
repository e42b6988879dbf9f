/* The clock and the random numbers every part of the harness uses
 * (harness.h, test support). */
#include "harness_private.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* Milliseconds left until deadline, at least 0. */
int harness__left_ms(long long deadline)
{
    long long l = deadline - now_ms();
    return l < 0 ? 0 : l > 1000000 ? 1000000 : (int)l;
}

/* poll() that retries on EINTR within the same bound. */
int harness__poll_until(struct pollfd *p, nfds_t n, long long deadline)
{
    for (;;) {
        int r = poll(p, n, harness__left_ms(deadline));
        if (r >= 0 || errno != EINTR)
            return r;
    }
}

uint32_t rng_next(unsigned *seed)
{
    uint32_t x = *seed ? (uint32_t)*seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *seed = x;
    return x;
}

void fill_random(void *buf, size_t len, unsigned *seed)
{
    unsigned char *p = buf;
    while (len >= 4) {
        uint32_t r = rng_next(seed);
        memcpy(p, &r, 4);
        p += 4;
        len -= 4;
    }
    if (len) {
        uint32_t r = rng_next(seed);
        memcpy(p, &r, len);
    }
}

unsigned harness_seed(void)
{
    static unsigned seed;
    if (seed)
        return seed;
    const char *e = getenv("IOPLEX_TEST_SEED");
    if (e && *e)
        seed = (unsigned)strtoul(e, NULL, 0);
    else
        seed = (unsigned)(now_ms() ^ ((long long)getpid() << 16));
    if (!seed)
        seed = 1;
    fprintf(stderr, "harness: seed %u (set IOPLEX_TEST_SEED=%u to replay)\n", seed, seed);
    return seed;
}
