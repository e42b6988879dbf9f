/*
 * The live progress line of bench and compare: on a terminal only (stderr
 * is one), never with --quiet; one line redrawn in place with \r, erased
 * before anything else is printed.
 */
#ifndef IOPLEX_PROGRESS_H
#define IOPLEX_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

/* 1 if stderr is a terminal and not quiet. */
int progress_wanted(int quiet);

struct progress_bench {
    double elapsed_s;   /* since the run started */
    double left_s;      /* until the measured window ends */
    int warmup;         /* still before the measured window */
    double msgs_per_s;  /* over the last second, warm-up included */
    double mb_out, mb_in; /* MB/s over the last second */
    uint64_t p99_ns;    /* of the measured window so far; 0 none yet */
    uint64_t errors, open_now;
};

void progress_bench(FILE *f, const struct progress_bench *p);

struct progress_compare {
    int done, total;          /* runs started (this one included), in all */
    const char *model, *scenario;
    int rep, reps;
    double run_s, run_len_s;  /* into this run; its length (0: unknown) */
    double elapsed_s;         /* since compare started */
};

void progress_compare(FILE *f, const struct progress_compare *p);

/* Erase the line (before other output, and at the end). */
void progress_clear(FILE *f);

#endif
