/* The live progress line (see progress.h). */
#include "progress.h"

#include <inttypes.h>
#include <unistd.h>

int progress_wanted(int quiet)
{
    return !quiet && isatty(STDERR_FILENO);
}

/* "75.2us", "1.23ms", "-" when none. */
static void fmt_lat(char *buf, size_t len, uint64_t ns)
{
    if (ns == 0)
        snprintf(buf, len, "-");
    else if (ns < 1000)
        snprintf(buf, len, "%" PRIu64 "ns", ns);
    else if (ns < 1000000)
        snprintf(buf, len, "%.1fus", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, len, "%.2fms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.2fs", (double)ns / 1e9);
}

void progress_bench(FILE *f, const struct progress_bench *p)
{
    char p99[32];
    fmt_lat(p99, sizeof p99, p->p99_ns);
    fprintf(f, "\r\033[K[%5.1f s%s] %9.0f msg/s %8.2f MB/s out %8.2f MB/s in  p99 %s  "
               "%" PRIu64 " errors  %" PRIu64 " open  %.0f s left",
            p->elapsed_s, p->warmup ? " warm-up" : "", p->msgs_per_s, p->mb_out, p->mb_in,
            p99, p->errors, p->open_now, p->left_s > 0 ? p->left_s : 0.0);
    fflush(f);
}

void progress_compare(FILE *f, const struct progress_compare *p)
{
    fprintf(f, "\r\033[K[%d/%d %4.0f s] %s, %s, run %d/%d: %.1f s", p->done, p->total,
            p->elapsed_s, p->model, p->scenario, p->rep, p->reps, p->run_s);
    if (p->run_len_s > 0)
        fprintf(f, " of %.0f s", p->run_len_s);
    fprintf(f, "; %d %s left after this", p->total - p->done,
            p->total - p->done == 1 ? "run" : "runs");
    fflush(f);
}

void progress_clear(FILE *f)
{
    fputs("\r\033[K", f);
    fflush(f);
}
