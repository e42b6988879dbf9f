/*
 * An independent reader of HdrHistogram logs for the tests: the npm
 * package hdr-histogram-js (a port of Gil Tene's Java HdrHistogram), run
 * with node. hdrjs_setup() installs it once into the build tree
 * (<build>/npm-hdr, next to the ioplex binary); node and npm must be on
 * PATH (scripts/setup.sh installs Debian's nodejs and npm when npm is
 * missing).
 */
#ifndef IOPLEX_TEST_HDRJS_H
#define IOPLEX_TEST_HDRJS_H

#include <stddef.h>

/* What hdr-histogram-js makes of the intervals of one or more logs added
 * together. Values in nanoseconds; *_w is the width of the value's slot
 * (sizeOfEquivalentValueRange), its resolution there. */
struct hdrjs_hist {
    double intervals, count, max;
    double p50, p90, p99, p99_9;
    double p50_w, p90_w, p99_w, p99_9_w;
};

/* 0, or -1 with the reason in err. */
int hdrjs_setup(char *err, size_t errlen);

/* Read the n logs: `all` is their union, each[i] (may be NULL) log i on
 * its own. 0, or -1 with the reason in err. */
int hdrjs_read(const char *const logs[], int n, struct hdrjs_hist *all,
               struct hdrjs_hist *each, char *err, size_t errlen);

#endif
