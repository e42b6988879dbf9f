/* The clock every part of the library reads: milliseconds on the
 * monotonic clock (timers, idle and linger deadlines, pauses). A leaf:
 * it calls nothing of ours. */
#include "internal.h"

#include <time.h>

uint64_t iop__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
