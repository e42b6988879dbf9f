/* ioplex compare: shared between the runner (compare.c) and the report
 * (compare_report.c). */
#ifndef IOPLEX_COMPARE_H
#define IOPLEX_COMPARE_H

#include <stddef.h>
#include <stdio.h>

#define CMP_MAX_MODELS 24
#define CMP_MAX_SCENARIOS 10
#define CMP_MAX_REPEAT 9

struct cmp_scenario {
    const char *name;    /* pp1, pp100, pp1000, stevens, stream */
    const char *title;   /* for tables and plots */
    const char *service; /* what the server runs */
    const char *mode;    /* ioplex bench -m */
    int connections;
    long count;          /* -n, or 0 for a timed run */
    int size;
    int tls;             /* serve --tls-*, bench --tls */
};

/* A throwaway certificate for the TLS scenarios (compare_cert.c). */
struct cmp_cert {
    char dir[256], cert[300], key[300];
};
int cmp_make_cert(struct cmp_cert *c);
void cmp_remove_cert(struct cmp_cert *c);

/* One measurement: one server, one bench run. */
struct cmp_run {
    int ok;              /* bench produced a result */
    double msgs_per_s, mb_per_s, p50_ms, p99_ms;
    double messages;
    double errors;
    double cpu_s;        /* server user+system, children included */
    double peak_rss_kib; /* sum over the server's process tree, sampled */
    char note[96];       /* why a run failed */
};

struct cmp_model {
    char name[32];
    int peer; /* a reference server from bench/ref, not an ioplex model */
    char peer_cmd[512];
};

struct cmp_result {
    struct cmp_model models[CMP_MAX_MODELS];
    int nmodels;
    const struct cmp_scenario *scenarios[CMP_MAX_SCENARIOS];
    int nscenarios;
    int repeat;
    double duration;
    struct cmp_run runs[CMP_MAX_MODELS][CMP_MAX_SCENARIOS][CMP_MAX_REPEAT];
};

/* Summary of one model x scenario over its repeats. */
struct cmp_summary {
    int n;                                 /* successful runs */
    double msgs, msgs_min, msgs_max;       /* median, min, max */
    double p50, p99, cpu_us_per_msg, rss_mib, errors;
};

void cmp_summarize(const struct cmp_result *r, int m, int s, struct cmp_summary *out);
void cmp_print_table(const struct cmp_result *r, FILE *f);
int cmp_write_json(const struct cmp_result *r, const char *path);
/* gnuplot plots (SVG and PNG) into dir; returns 0, or -1 if gnuplot is missing. */
int cmp_write_plots(const struct cmp_result *r, const char *dir);

#endif
