/*
 * The latency histogram (src/stats/hist.c) against the truth: random
 * samples are also kept and sorted, and every percentile the histogram
 * reports must be within 1% of the exact nearest-rank percentile; counts,
 * min and max must be exact; merging must equal recording everything into
 * one histogram. Values are nanoseconds, as the bench records them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats/hist.h"

#define US UINT64_C(1000)
#define MS (1000 * US)
#define SEC (1000 * MS)
#define N_SAMPLES 200000

static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

/* Uniform in [lo, hi]. */
static uint64_t uniform(uint64_t lo, uint64_t hi)
{
    return lo + rnd() % (hi - lo + 1);
}

/* Log-uniform in [lo, hi]: a uniform octave, then uniform within it. */
static uint64_t log_uniform(uint64_t lo, uint64_t hi)
{
    for (;;) {
        unsigned lo_bit = 63 - (unsigned)__builtin_clzll(lo);
        unsigned hi_bit = 63 - (unsigned)__builtin_clzll(hi);
        unsigned e = lo_bit + (unsigned)(rnd() % (hi_bit - lo_bit + 1));
        uint64_t v = (UINT64_C(1) << e) + rnd() % (UINT64_C(1) << e);
        if (v >= lo && v <= hi)
            return v;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact nearest-rank percentile of sorted v[0, n), by the rule hist.h
 * states: rank ceil(p/100 * n), at least 1. */
static uint64_t exact_percentile(const uint64_t *v, size_t n, double p)
{
    double r = p / 100.0 * (double)n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static void assert_close(const char *what, double got, double want, double rel)
{
    double err = got > want ? got - want : want - got;
    if (want == 0 ? got != 0 : err / want > rel)
        fail_msg("%s: got %.1f, want %.1f (relative error %.4f%% > %.2f%%)", what,
                 got, want, want ? 100.0 * err / want : 100.0, 100.0 * rel);
}

static const double checked[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

/* Record n samples from gen into a histogram and an array, then compare. */
static void check_distribution(const char *name, uint64_t (*gen)(void), size_t n)
{
    uint64_t *v = malloc(n * sizeof *v);
    iop__hist *h = malloc(sizeof *h);
    assert_non_null(v);
    assert_non_null(h);
    iop__hist_reset(h);
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = gen();
        sum += (double)v[i];
        iop__hist_record(h, v[i]);
    }
    qsort(v, n, sizeof *v, cmp_u64);
    assert_int_equal(iop__hist_count(h), n);
    assert_int_equal(iop__hist_min(h), v[0]);
    assert_int_equal(iop__hist_max(h), v[n - 1]);
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s p%g", name, checked[i]);
        assert_close(what, (double)iop__hist_percentile(h, checked[i]),
                     (double)exact_percentile(v, n, checked[i]), 0.01);
    }
    double mean = sum / (double)n, var = 0;
    for (size_t i = 0; i < n; i++)
        var += ((double)v[i] - mean) * ((double)v[i] - mean);
    double sd = 0, x = var / (double)n;
    /* sqrt without libm (bisection is plenty for a test) */
    for (double lo = 0, hi = x > 1 ? x : 1, k = 0; k < 200; k++) {
        sd = (lo + hi) / 2;
        if (sd * sd > x)
            hi = sd;
        else
            lo = sd;
    }
    assert_close("mean", iop__hist_mean(h), mean, 1e-9);
    assert_close("stddev", iop__hist_stddev(h), sd, 0.01);
    free(v);
    free(h);
}

static uint64_t gen_uniform(void) { return uniform(1 * US, 60 * SEC); }
static uint64_t gen_log_uniform(void) { return log_uniform(1 * US, 60 * SEC); }
static uint64_t gen_bimodal(void)
{
    /* a fast path and a slow one: 90% near 100 us, 10% near 50 ms */
    return rnd() % 10 ? uniform(80 * US, 120 * US) : uniform(40 * MS, 60 * MS);
}
static uint64_t gen_small(void) { return uniform(0, 300); }

static void test_uniform(void **state)
{
    (void)state;
    check_distribution("uniform 1us-60s", gen_uniform, N_SAMPLES);
}

static void test_log_uniform(void **state)
{
    (void)state;
    check_distribution("log-uniform 1us-60s", gen_log_uniform, N_SAMPLES);
}

static void test_bimodal(void **state)
{
    (void)state;
    check_distribution("bimodal", gen_bimodal, N_SAMPLES);
}

/* Below 256 every value has its own slot: percentiles are exact. */
static void test_small_values_exact(void **state)
{
    (void)state;
    check_distribution("small", gen_small, 10000);
    iop__hist h;
    iop__hist_reset(&h);
    for (uint64_t i = 1; i <= 100; i++)
        iop__hist_record(&h, i);
    assert_int_equal(iop__hist_percentile(&h, 50), 50);
    assert_int_equal(iop__hist_percentile(&h, 99), 99);
    assert_int_equal(iop__hist_percentile(&h, 0), 1);
    assert_int_equal(iop__hist_percentile(&h, 100), 100);
}

/* The slots tile the integers in order, each at most 1/128 of its values
 * wide, and a value maps to the slot that holds it. */
static void test_layout(void **state)
{
    (void)state;
    uint64_t expect_lo = 0;
    for (size_t s = 0; s < IOP_HIST_SLOTS; s++) {
        uint64_t lo, hi;
        iop__hist_slot_range(s, &lo, &hi);
        assert_int_equal(lo, expect_lo);
        assert_true(hi >= lo);
        if (lo >= IOP_HIST_SUB_BUCKETS)
            assert_true((hi - lo + 1) * 128 <= lo);
        assert_int_equal(iop__hist_slot(lo), s);
        assert_int_equal(iop__hist_slot(hi), s);
        expect_lo = hi + 1;
    }
    assert_int_equal(expect_lo - 1, IOP_HIST_HIGHEST);
    /* Beyond the range: the top slot, max still exact. */
    iop__hist h;
    iop__hist_reset(&h);
    iop__hist_record(&h, UINT64_MAX / 2);
    assert_int_equal(iop__hist_max(&h), UINT64_MAX / 2);
    assert_int_equal(h.counts[IOP_HIST_SLOTS - 1], 1);
    assert_int_equal(iop__hist_percentile(&h, 100), UINT64_MAX / 2);
}

/* Per-thread histograms added up equal one that saw everything. */
static void test_merge(void **state)
{
    (void)state;
    iop__hist *parts = calloc(4, sizeof *parts), *all = malloc(sizeof *all),
             *sum = malloc(sizeof *sum);
    assert_non_null(parts);
    assert_non_null(all);
    assert_non_null(sum);
    for (int i = 0; i < 4; i++)
        iop__hist_reset(&parts[i]);
    iop__hist_reset(all);
    iop__hist_reset(sum);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = i % 3 ? gen_log_uniform() : gen_bimodal();
        iop__hist_record(&parts[rnd() % 4], v);
        iop__hist_record(all, v);
    }
    iop__hist_record_n(&parts[2], 5 * MS, 7);
    iop__hist_record_n(all, 5 * MS, 7);
    for (int i = 0; i < 4; i++)
        iop__hist_merge(sum, &parts[i]);
    assert_int_equal(iop__hist_count(sum), 100007);
    assert_int_equal(iop__hist_count(sum), iop__hist_count(all));
    assert_int_equal(iop__hist_min(sum), iop__hist_min(all));
    assert_int_equal(iop__hist_max(sum), iop__hist_max(all));
    assert_memory_equal(sum->counts, all->counts, sizeof all->counts);
    assert_close("merged mean", iop__hist_mean(sum), iop__hist_mean(all), 1e-12);
    for (size_t i = 0; i < sizeof checked / sizeof checked[0]; i++)
        assert_int_equal(iop__hist_percentile(sum, checked[i]),
                         iop__hist_percentile(all, checked[i]));
    /* Merging an empty one changes nothing; reset empties. */
    iop__hist_reset(&parts[0]);
    iop__hist_merge(sum, &parts[0]);
    assert_int_equal(iop__hist_count(sum), 100007);
    iop__hist_reset(sum);
    assert_int_equal(iop__hist_count(sum), 0);
    assert_int_equal(iop__hist_max(sum), 0);
    assert_int_equal(iop__hist_percentile(sum, 50), 0);
    free(parts);
    free(all);
    free(sum);
}

/* HdrHistogram's percentile iteration: percentiles and values rise, the
 * count reaches the total, the last line is 100% at max, and the steps
 * get finer towards 100%. */
static void test_percentile_iteration(void **state)
{
    (void)state;
    iop__hist *h = malloc(sizeof *h);
    assert_non_null(h);
    iop__hist_reset(h);
    struct iop__hist_pct_iter it;
    iop__hist_pct_iter_init(&it, h, 5);
    assert_int_equal(iop__hist_pct_iter_next(&it), 0); /* empty: no lines */
    for (int i = 0; i < 100000; i++)
        iop__hist_record(h, gen_log_uniform());
    iop__hist_pct_iter_init(&it, h, 5);
    double last_pct = -1;
    uint64_t last_value = 0, last_total = 0;
    int lines = 0, at_99 = 0;
    while (iop__hist_pct_iter_next(&it)) {
        lines++;
        assert_true(it.percentile >= last_pct);
        assert_true(it.value >= last_value);
        assert_true(it.total_to >= last_total);
        assert_true(it.value <= iop__hist_max(h));
        if (it.percentile >= 99.0 && it.percentile < 100.0)
            at_99++;
        last_pct = it.percentile;
        last_value = it.value;
        last_total = it.total_to;
        assert_true(lines < 10000);
    }
    assert_true(last_pct == 100.0);
    assert_int_equal(last_value, iop__hist_max(h));
    assert_int_equal(last_total, iop__hist_count(h));
    assert_true(lines > 50);
    assert_true(at_99 >= 10); /* finer steps near the tail */
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_uniform),
        cmocka_unit_test(test_log_uniform),
        cmocka_unit_test(test_bimodal),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_percentile_iteration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
