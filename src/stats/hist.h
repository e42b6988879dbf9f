/*
 * A log-linear latency histogram, laid out as HdrHistogram lays it out with
 * 256 sub-buckets: values below 256 each have a slot of their own; above,
 * every power-of-two range [2^k, 2^(k+1)) is cut into 128 equal slots. A
 * slot is thus at most 1/128 of the values it holds wide, and reporting
 * its middle is off by at most 0.4%. Values are plain integers (the bench
 * records nanoseconds: 1 ns exact, then 1 us to 60 s well inside 1%).
 *
 * The slots are an array inside the struct: constant memory (about 35 KB),
 * no allocation, and two histograms merge by adding slot counts, so every
 * thread records into its own and they are added up at the end.
 *
 * Internal to ioplex (the CLI's bench uses it); not part of ioplex.h.
 */
#ifndef IOP_STATS_HIST_H
#define IOP_STATS_HIST_H

#include <stddef.h>
#include <stdint.h>

#define IOP_HIST_SUB_BUCKETS 256 /* HdrHistogram's sub_bucket_count */
#define IOP_HIST_HALF 128
#define IOP_HIST_MAX_BITS 40     /* values up to 2^40 - 1 (18 min in ns) */
#define IOP_HIST_BUCKETS (IOP_HIST_MAX_BITS - 7)
#define IOP_HIST_SLOTS (IOP_HIST_SUB_BUCKETS + (IOP_HIST_BUCKETS - 1) * IOP_HIST_HALF)
#define IOP_HIST_HIGHEST ((UINT64_C(1) << IOP_HIST_MAX_BITS) - 1)

typedef struct iop__hist {
    uint64_t total;
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    double sum;        /* exact values summed, for the mean */
    uint64_t counts[IOP_HIST_SLOTS];
} iop__hist;

void iop__hist_reset(iop__hist *h);
#define iop__hist_init iop__hist_reset

/* Values above IOP_HIST_HIGHEST land in the top slot (max stays exact). */
void iop__hist_record(iop__hist *h, uint64_t value);
void iop__hist_record_n(iop__hist *h, uint64_t value, uint64_t n);
/* dst += src: the same as having recorded both into dst. */
void iop__hist_merge(iop__hist *dst, const iop__hist *src);

uint64_t iop__hist_count(const iop__hist *h);
uint64_t iop__hist_min(const iop__hist *h); /* 0 when empty */
uint64_t iop__hist_max(const iop__hist *h); /* 0 when empty */
double iop__hist_mean(const iop__hist *h);  /* 0 when empty */
/* Population standard deviation around the exact mean, from slot middles. */
double iop__hist_stddev(const iop__hist *h);

/*
 * The value at percentile p (0..100) by nearest rank: the smallest
 * recorded value v with at least p% of the values <= v, i.e. the value of
 * rank ceil(p/100 * count) (at least 1). Reported as the middle of its
 * slot, kept within [min, max]; p >= 100 gives max exactly. 0 when empty.
 */
uint64_t iop__hist_percentile(const iop__hist *h, double p);

/* The slot a value falls in and the values [lo, hi] it holds. */
size_t iop__hist_slot(uint64_t value);
void iop__hist_slot_range(size_t slot, uint64_t *lo, uint64_t *hi);

/*
 * HdrHistogram's percentile iteration, for its text ("hgrm") output: steps
 * of percentile that halve the distance to 100% every ticks_per_half
 * steps, each reporting the highest value of the slot that reaches it
 * (kept within max) and the count up to that slot; the last step is 100%.
 */
struct iop__hist_pct_iter {
    const iop__hist *h;
    int ticks_per_half;
    long slot;           /* current slot; -1 before the first */
    uint64_t count_to;   /* values in slots [0, slot] */
    double next_pct;     /* the percentile to reach next */
    int seen_last;
    /* Filled by each successful next(): */
    double percentile;   /* 0..100 */
    uint64_t value;      /* highest value of the slot, at most max */
    uint64_t total_to;   /* count of values up to and including the slot */
};

void iop__hist_pct_iter_init(struct iop__hist_pct_iter *it, const iop__hist *h,
                            int ticks_per_half);
/* 1 and the fields filled, or 0 at the end. */
int iop__hist_pct_iter_next(struct iop__hist_pct_iter *it);

#endif
