/* The log-linear histogram (see hist.h for the layout and its error). */
#include "stats/hist.h"

#include <string.h>

/* No libm: the library links only the C library and threads, so the few
 * bits of arithmetic needed are done here. */
static double sqrt_pos(double x)
{
    if (x <= 0.0)
        return 0.0;
    double r = x > 1.0 ? x : 1.0; /* Newton from above converges down */
    for (int i = 0; i < 200; i++) {
        double next = 0.5 * (r + x / r);
        if (next >= r)
            break;
        r = next;
    }
    return r;
}

/* ceil(x) for 0 <= x < 2^63. */
static uint64_t ceil_u64(double x)
{
    if (x <= 0.0)
        return 0;
    uint64_t t = (uint64_t)x;
    return (double)t < x ? t + 1 : t;
}

void iop__hist_reset(iop__hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

size_t iop__hist_slot(uint64_t v)
{
    if (v > IOP_HIST_HIGHEST)
        v = IOP_HIST_HIGHEST;
    if (v < IOP_HIST_SUB_BUCKETS)
        return (size_t)v;
    /* msb >= 8: keep the top 8 bits, so (v >> shift) is in [128, 255]. */
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 7;
    return IOP_HIST_SUB_BUCKETS + (size_t)(shift - 1) * IOP_HIST_HALF +
           (size_t)((v >> shift) - IOP_HIST_HALF);
}

void iop__hist_slot_range(size_t slot, uint64_t *lo, uint64_t *hi)
{
    if (slot < IOP_HIST_SUB_BUCKETS) {
        *lo = *hi = slot;
        return;
    }
    size_t k = slot - IOP_HIST_SUB_BUCKETS;
    unsigned shift = (unsigned)(k / IOP_HIST_HALF) + 1;
    uint64_t sub = IOP_HIST_HALF + k % IOP_HIST_HALF;
    *lo = sub << shift;
    *hi = *lo + (UINT64_C(1) << shift) - 1;
}

void iop__hist_record_n(iop__hist *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    h->counts[iop__hist_slot(v)] += n;
    h->total += n;
    h->sum += (double)v * (double)n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void iop__hist_record(iop__hist *h, uint64_t v)
{
    iop__hist_record_n(h, v, 1);
}

void iop__hist_merge(iop__hist *dst, const iop__hist *src)
{
    if (src->total == 0)
        return;
    for (size_t i = 0; i < IOP_HIST_SLOTS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t iop__hist_count(const iop__hist *h) { return h->total; }
uint64_t iop__hist_min(const iop__hist *h) { return h->total ? h->min : 0; }
uint64_t iop__hist_max(const iop__hist *h) { return h->total ? h->max : 0; }

double iop__hist_mean(const iop__hist *h)
{
    return h->total ? h->sum / (double)h->total : 0.0;
}

/* The value a slot stands for: its middle, kept within what was seen. */
static double slot_value(const iop__hist *h, size_t slot)
{
    uint64_t lo, hi;
    iop__hist_slot_range(slot, &lo, &hi);
    double mid = ((double)lo + (double)hi) / 2.0;
    if (mid < (double)h->min)
        mid = (double)h->min;
    if (mid > (double)h->max)
        mid = (double)h->max;
    return mid;
}

double iop__hist_stddev(const iop__hist *h)
{
    if (h->total == 0)
        return 0.0;
    /* Around the exact mean, one pass over the slots: no cancellation,
     * unlike sum(x^2) - n*mean^2. */
    double mean = iop__hist_mean(h), acc = 0.0;
    for (size_t i = 0; i < IOP_HIST_SLOTS; i++)
        if (h->counts[i]) {
            double d = slot_value(h, i) - mean;
            acc += d * d * (double)h->counts[i];
        }
    return sqrt_pos(acc / (double)h->total);
}

uint64_t iop__hist_percentile(const iop__hist *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p < 0.0)
        p = 0.0;
    uint64_t rank = ceil_u64(p / 100.0 * (double)h->total);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (size_t i = 0; i < IOP_HIST_SLOTS; i++) {
        seen += h->counts[i];
        if (seen >= rank)
            return (uint64_t)(slot_value(h, i) + 0.5);
    }
    return h->max;
}

/* ---- HdrHistogram's percentile iteration -------------------------------- */

void iop__hist_pct_iter_init(struct iop__hist_pct_iter *it, const iop__hist *h,
                            int ticks_per_half)
{
    memset(it, 0, sizeof *it);
    it->h = h;
    it->ticks_per_half = ticks_per_half > 0 ? ticks_per_half : 5;
    it->slot = -1;
}

static uint64_t slot_top(const iop__hist *h, long slot)
{
    uint64_t lo, hi;
    iop__hist_slot_range((size_t)slot, &lo, &hi);
    return hi < h->max ? hi : h->max;
}

/* Move to the next slot; 0 past the last. */
static int advance(struct iop__hist_pct_iter *it)
{
    if (it->slot + 1 >= (long)IOP_HIST_SLOTS)
        return 0;
    it->slot++;
    it->count_to += it->h->counts[it->slot];
    return 1;
}

int iop__hist_pct_iter_next(struct iop__hist_pct_iter *it)
{
    const iop__hist *h = it->h;
    if (h->total == 0)
        return 0;
    if (it->count_to >= h->total) {
        /* Every value seen: one last line at 100%, then the end. */
        if (it->seen_last || it->slot < 0)
            return 0;
        it->seen_last = 1;
        it->percentile = 100.0;
        it->value = slot_top(h, it->slot);
        it->total_to = it->count_to;
        return 1;
    }
    if (it->slot < 0 && !advance(it))
        return 0;
    do {
        double current = 100.0 * (double)it->count_to / (double)h->total;
        if (h->counts[it->slot] != 0 && it->next_pct <= current) {
            it->percentile = it->next_pct;
            it->value = slot_top(h, it->slot);
            it->total_to = it->count_to;
            /* Ticks per unit of percentile double each time the distance
             * to 100% halves, as HdrHistogram's iterator does. */
            double ratio = 100.0 / (100.0 - it->next_pct), ticks = 2.0 * it->ticks_per_half;
            for (double p2 = 2.0; p2 <= ratio && ticks < 1e300; p2 *= 2.0)
                ticks *= 2.0; /* ticks_per_half * 2^(floor(log2(ratio)) + 1) */
            it->next_pct += 100.0 / ticks;
            return 1;
        }
    } while (advance(it));
    return 0;
}
