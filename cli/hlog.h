/*
 * HdrHistogram's interval log (format version 1.3), written by
 * `ioplex bench --hlog` and read by `ioplex report`.
 *
 * Our histogram (src/stats/hist.h) is HdrHistogram's layout exactly with
 * lowest discernible value 1, 2 significant digits (256 sub-buckets) and
 * highest trackable value 2^40 - 1: slot i of ours is counts index i of
 * theirs, so a histogram goes out and comes back without any rounding.
 * Values are nanoseconds; each interval line's max is in milliseconds
 * (six decimals, so still exact to the nanosecond).
 *
 * Lines of ours that HdrHistogram's readers skip (they start with '#'):
 *   #[ioplex bench VERSION on HOST, values in ns, interval max in ms]
 *   #ioplex-result {the bench's JSON object}      (last, once the run ended)
 */
#ifndef IOPLEX_HLOG_H
#define IOPLEX_HLOG_H

#include "../src/stats/hist.h"

#include <stddef.h>
#include <stdio.h>

#define HLOG_SIG_DIGITS 2
#define HLOG_LOWEST 1
#define HLOG_RESULT_PREFIX "#ioplex-result "

/* The histogram as HdrHistogram's compressed V2 encoding in base64 (what
 * an interval line carries); malloc'ed, NULL if out of memory. */
char *hlog_encode(const iop__hist *h);

/* The reverse. Any histogram whose parameters map onto ours exactly is
 * accepted (1 as lowest value, 2 significant digits); min and max are the
 * bounds of the lowest and highest non-empty slots, sum their middles.
 * 0, or -1 with a reason in err. */
int hlog_decode(const char *b64, size_t len, iop__hist *h, char *err, size_t errlen);

/* The header: format version, ioplex's line, StartTime and BaseTime (both
 * start_unix_s: interval times are seconds since it), the legend. */
int hlog_write_header(FILE *f, double start_unix_s, const char *host);
/* One interval line: start offset from the base time, length, max (ms). */
int hlog_write_interval(FILE *f, double offset_s, double len_s, const iop__hist *h);

struct hlog_interval {
    double start_s; /* absolute (Unix seconds) when the log has a base time */
    double len_s;
    iop__hist *h;
};

struct hlog_file {
    int ours;               /* the "#[ioplex bench" line is there */
    double start_s;         /* StartTime, 0 if none */
    struct hlog_interval *iv;
    size_t n;
    char *result;           /* the #ioplex-result JSON, NULL if none */
};

/* Is this text an HdrHistogram log (its version line, or any interval
 * line after '#' comments)? */
int hlog_looks_like(const char *text);
/* Parse a whole log. 0, or -1 with "line N: why" in err. */
int hlog_parse(const char *text, struct hlog_file *out, char *err, size_t errlen);
void hlog_free(struct hlog_file *f);

/* --start-at: Unix seconds (a fraction allowed) or RFC 3339
 * (2026-12-04T17:30:00Z, +01:00, .25 seconds). 0 or -1. */
int hlog_parse_time(const char *s, double *unix_s);
/* The wall clock, Unix seconds. */
double hlog_now(void);
/* RFC 3339 in UTC, milliseconds when there are any. */
void hlog_format_time(char *buf, size_t len, double unix_s);

#endif
