/*
 * HdrHistogram logs and histograms as `ioplex report` reads them
 * (cli/hlog.c): files a user hands it, from anywhere.
 *
 * The first byte picks what the rest is:
 *   0  a whole log: hlog_parse() returns 0 or -1 with a reason, and every
 *      interval it keeps has a total equal to its slots' sum;
 *   1  one histogram in base64: hlog_decode() likewise;
 *   2  a histogram to build (pairs of slot, count): hlog_encode() then
 *      hlog_decode() gives back the same slots and total (the round trip
 *      bench --hlog and report rely on);
 *   3  a --start-at time: hlog_parse_time() accepts or refuses, and what it
 *      accepts is a finite number;
 *   4  a JSON result as report reads it (cli/json_read.c): every lookup
 *      stays inside the text, strings inside their buffer.
 */
#include "fuzz_util.h"
#include "hlog.h"
#include "json_read.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len);

static uint64_t slots_sum(const iop__hist *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i < IOP_HIST_SLOTS; i++)
        n += h->counts[i];
    return n;
}

static iop__hist a, b;

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t len)
{
    struct fuzz_in in = {bytes, len};
    int what = fuzz_byte(&in) % 5;
    char *text = malloc(in.n + 1);
    if (!text)
        return 0;
    memcpy(text, in.p, in.n);
    text[in.n] = '\0';
    char err[256];
    if (what == 0) {
        struct hlog_file f;
        if (hlog_parse(text, &f, err, sizeof err) == 0) {
            for (size_t i = 0; i < f.n; i++)
                FUZZ_CHECK(f.iv[i].h->total == slots_sum(f.iv[i].h));
            hlog_free(&f);
        } else {
            FUZZ_CHECK(err[0] != '\0');
        }
        (void)hlog_looks_like(text);
    } else if (what == 1) {
        if (hlog_decode(text, strlen(text), &a, err, sizeof err) == 0)
            FUZZ_CHECK(a.total == slots_sum(&a));
        else
            FUZZ_CHECK(err[0] != '\0');
    } else if (what == 2) {
        iop__hist_reset(&a);
        while (in.n >= 4) {
            size_t slot = fuzz_u16(&in) % IOP_HIST_SLOTS;
            uint64_t count = fuzz_u16(&in);
            uint64_t lo, hi;
            iop__hist_slot_range(slot, &lo, &hi);
            iop__hist_record_n(&a, lo, count);
        }
        char *b64 = hlog_encode(&a);
        FUZZ_CHECK(b64 != NULL);
        FUZZ_CHECK(hlog_decode(b64, strlen(b64), &b, err, sizeof err) == 0);
        FUZZ_CHECK(b.total == a.total);
        FUZZ_CHECK(memcmp(a.counts, b.counts, sizeof a.counts) == 0);
        free(b64);
    } else if (what == 3) {
        double t;
        if (hlog_parse_time(text, &t) == 0)
            FUZZ_CHECK(isfinite(t));
    } else {
        const char *end = json_skip(text, 0);
        FUZZ_CHECK(!end || (end > text && end <= text + in.n));
        static const char *const keys[] = {"tool", "mode", "messages", "errors", "histogram",
                                           "hdr", "refused", "p99"};
        const char *objs[3] = {text, json_get(text, "errors"), json_get(text, "histogram")};
        for (size_t o = 0; o < 3; o++)
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                const char *v = json_get(objs[o], keys[k]);
                FUZZ_CHECK(!v || (v >= text && v <= text + in.n));
                char buf[16];
                double d;
                if (json_str_at(objs[o], keys[k], buf, sizeof buf))
                    FUZZ_CHECK(strlen(buf) < sizeof buf);
                (void)json_num_at(objs[o], keys[k], &d);
                (void)json_u64(objs[o], keys[k]);
            }
    }
    free(text);
    return 0;
}
