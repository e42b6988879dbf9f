/* ioplex compare: the table, results.json and the gnuplot plots. */
#define _GNU_SOURCE
#include "compare.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void cmp_summarize(const struct cmp_result *r, int m, int s, struct cmp_summary *out)
{
    double msgs[CMP_MAX_REPEAT], p50[CMP_MAX_REPEAT], p99[CMP_MAX_REPEAT],
        cpu[CMP_MAX_REPEAT], rss[CMP_MAX_REPEAT], err[CMP_MAX_REPEAT];
    int n = 0;
    for (int i = 0; i < r->repeat; i++) {
        const struct cmp_run *run = &r->runs[m][s][i];
        if (!run->ok)
            continue;
        msgs[n] = r->scenarios[s]->mode[0] == 's' && strcmp(r->scenarios[s]->mode, "stream") == 0
                      ? run->mb_per_s : run->msgs_per_s;
        p50[n] = run->p50_ms;
        p99[n] = run->p99_ms;
        cpu[n] = run->messages > 0 ? run->cpu_s / run->messages * 1e6 : NAN;
        rss[n] = run->peak_rss_kib / 1024.0;
        err[n] = run->errors;
        n++;
    }
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0)
        return;
    out->msgs = median(msgs, n);
    out->msgs_min = msgs[0];
    out->msgs_max = msgs[n - 1];
    out->p50 = median(p50, n);
    out->p99 = median(p99, n);
    out->cpu_us_per_msg = median(cpu, n);
    out->rss_mib = median(rss, n);
    out->errors = median(err, n);
}

static int is_stream(const struct cmp_scenario *sc) { return strcmp(sc->mode, "stream") == 0; }

static void fmt_num(char *buf, size_t len, double v, const char *unit)
{
    if (!isfinite(v))
        snprintf(buf, len, "-");
    else if (v >= 100)
        snprintf(buf, len, "%.0f%s", v, unit);
    else if (v >= 10)
        snprintf(buf, len, "%.1f%s", v, unit);
    else
        snprintf(buf, len, "%.2f%s", v, unit);
}

void cmp_print_table(const struct cmp_result *r, FILE *f)
{
    fprintf(f, "ioplex compare: medians of %d run%s, %.1f s each (min-max in brackets)\n",
            r->repeat, r->repeat > 1 ? "s" : "", r->duration);
    for (int s = 0; s < r->nscenarios; s++) {
        const struct cmp_scenario *sc = r->scenarios[s];
        const char *unit = is_stream(sc) ? "MB/s" : (strcmp(sc->mode, "connect") == 0 ? "conn/s" : "msg/s");
        fprintf(f, "\n### %s\n\n", sc->title);
        fprintf(f, "| model | %s | p50 ms | p99 ms | server CPU us/msg | peak RSS MiB | errors |\n", unit);
        fprintf(f, "|---|---:|---:|---:|---:|---:|---:|\n");
        for (int m = 0; m < r->nmodels; m++) {
            struct cmp_summary sm;
            cmp_summarize(r, m, s, &sm);
            if (sm.n == 0) {
                const char *why = r->runs[m][s][0].note[0] ? r->runs[m][s][0].note : "no result";
                fprintf(f, "| %s | %s | | | | | |\n", r->models[m].name, why);
                continue;
            }
            char v[32], lo[32], hi[32], p50[32], p99[32], cpu[32], rss[32];
            fmt_num(v, sizeof v, sm.msgs, "");
            fmt_num(lo, sizeof lo, sm.msgs_min, "");
            fmt_num(hi, sizeof hi, sm.msgs_max, "");
            fmt_num(p50, sizeof p50, sm.p50, "");
            fmt_num(p99, sizeof p99, sm.p99, "");
            fmt_num(cpu, sizeof cpu, sm.cpu_us_per_msg, "");
            fmt_num(rss, sizeof rss, sm.rss_mib, "");
            if (r->repeat > 1)
                fprintf(f, "| %s | %s [%s-%s] | %s | %s | %s | %s | %.0f |\n", r->models[m].name,
                        v, lo, hi, p50, p99, cpu, rss, sm.errors);
            else
                fprintf(f, "| %s | %s | %s | %s | %s | %s | %.0f |\n", r->models[m].name, v,
                        p50, p99, cpu, rss, sm.errors);
        }
    }
}

/* A JSON number, or null where there is none (JSON has no NaN). */
static void json_num(FILE *f, const char *key, double v, const char *sep)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.6g%s", key, v, sep);
    else
        fprintf(f, "\"%s\":null%s", key, sep);
}

int cmp_write_json(const struct cmp_result *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\"tool\":\"ioplex compare\",\"cpus\":%ld,\"repeat\":%d,", sysconf(_SC_NPROCESSORS_ONLN),
            r->repeat);
    json_num(f, "duration_s", r->duration, ",");
    fprintf(f, "\"scenarios\":[");
    for (int s = 0; s < r->nscenarios; s++) {
        const struct cmp_scenario *sc = r->scenarios[s];
        fprintf(f, "%s{\"name\":\"%s\",\"title\":\"%s\",\"service\":\"%s\",\"mode\":\"%s\","
                "\"connections\":%d,\"count\":%ld,\"size\":%d}", s ? "," : "", sc->name, sc->title,
                sc->service, sc->mode, sc->connections, sc->count, sc->size);
    }
    fprintf(f, "],\"results\":[");
    int first = 1;
    for (int m = 0; m < r->nmodels; m++)
        for (int s = 0; s < r->nscenarios; s++) {
            struct cmp_summary sm;
            cmp_summarize(r, m, s, &sm);
            fprintf(f, "%s{\"model\":\"%s\",\"reference\":%s,\"scenario\":\"%s\",\"runs_ok\":%d,",
                    first ? "" : ",", r->models[m].name, r->models[m].peer ? "true" : "false",
                    r->scenarios[s]->name, sm.n);
            first = 0;
            int none = sm.n == 0;
            json_num(f, is_stream(r->scenarios[s]) ? "mb_per_s" : "per_s", none ? NAN : sm.msgs, ",");
            json_num(f, "min", none ? NAN : sm.msgs_min, ",");
            json_num(f, "max", none ? NAN : sm.msgs_max, ",");
            json_num(f, "p50_ms", none ? NAN : sm.p50, ",");
            json_num(f, "p99_ms", none ? NAN : sm.p99, ",");
            json_num(f, "cpu_us_per_msg", none ? NAN : sm.cpu_us_per_msg, ",");
            json_num(f, "peak_rss_mib", none ? NAN : sm.rss_mib, ",");
            json_num(f, "errors", none ? NAN : sm.errors, ",");
            fprintf(f, "\"runs\":[");
            for (int i = 0; i < r->repeat; i++) {
                const struct cmp_run *run = &r->runs[m][s][i];
                fprintf(f, "%s{\"ok\":%s,", i ? "," : "", run->ok ? "true" : "false");
                json_num(f, "per_s", run->ok ? run->msgs_per_s : NAN, ",");
                json_num(f, "cpu_s", run->ok ? run->cpu_s : NAN, ",");
                json_num(f, "peak_rss_kib", run->ok ? run->peak_rss_kib : NAN, "");
                fprintf(f, "}");
            }
            fprintf(f, "]}");
        }
    fprintf(f, "]}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* ---- plots ------------------------------------------------------------------------ */

static int have_gnuplot(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* Draw one bar chart (one value per model) for each requested figure, in
 * SVG and PNG. Data go through a file so no model name reaches a shell. */
static int bars(const struct cmp_result *r, const char *dir, const char *name,
                const char *title, const char *ylabel, int scenario, int which)
{
    char dat[600], script[600];
    snprintf(dat, sizeof dat, "%s/%s.dat", dir, name);
    FILE *d = fopen(dat, "w");
    if (!d)
        return -1;
    int rows = 0;
    for (int m = 0; m < r->nmodels; m++) {
        struct cmp_summary sm;
        cmp_summarize(r, m, scenario, &sm);
        double v = which == 0 ? sm.msgs : which == 1 ? sm.cpu_us_per_msg : sm.p50;
        double v2 = which == 2 ? sm.p99 : 0;
        if (sm.n == 0 || !isfinite(v))
            continue;
        fprintf(d, "\"%s\" %g %g\n", r->models[m].name, v, isfinite(v2) ? v2 : 0);
        rows++;
    }
    fclose(d);
    if (rows == 0)
        return 0; /* nothing measured: no plot */
    snprintf(script, sizeof script, "%s/%s.gp", dir, name);
    FILE *g = fopen(script, "w");
    if (!g)
        return -1;
    for (int t = 0; t < 2; t++) {
        fprintf(g, "set terminal %s size 900,500\nset output '%s/%s.%s'\n",
                t ? "png" : "svg", dir, name, t ? "png" : "svg");
        fprintf(g, "set title \"%s\"\nset ylabel \"%s\"\nset style data histograms\n"
                   "set style fill solid 0.8 border -1\nset boxwidth 0.8\nset grid ytics\n"
                   "set xtics rotate by -30\nset yrange [0:*]\nset key top right\n", title, ylabel);
        if (which == 2)
            fprintf(g, "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99'\n", dat);
        else
            fprintf(g, "plot '%s' using 2:xtic(1) notitle\n", dat);
    }
    fclose(g);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>/dev/null", script);
    return system(cmd) == 0 ? 0 : -1;
}

/* Throughput against connections: one line per model over pp1/pp100/pp1000. */
static int lines(const struct cmp_result *r, const char *dir)
{
    int idx[3], n = 0;
    for (int s = 0; s < r->nscenarios; s++)
        if (strncmp(r->scenarios[s]->name, "pp", 2) == 0 && n < 3)
            idx[n++] = s;
    if (n < 2)
        return 0;
    char dat[600], script[600];
    snprintf(dat, sizeof dat, "%s/throughput.dat", dir);
    FILE *d = fopen(dat, "w");
    if (!d)
        return -1;
    for (int m = 0; m < r->nmodels; m++) {
        fprintf(d, "\"%s\"\n", r->models[m].name);
        for (int i = 0; i < n; i++) {
            struct cmp_summary sm;
            cmp_summarize(r, m, idx[i], &sm);
            if (sm.n > 0)
                fprintf(d, "%d %g\n", r->scenarios[idx[i]]->connections, sm.msgs);
        }
        fprintf(d, "\n\n");
    }
    fclose(d);
    snprintf(script, sizeof script, "%s/throughput.gp", dir);
    FILE *g = fopen(script, "w");
    if (!g)
        return -1;
    for (int t = 0; t < 2; t++)
        fprintf(g, "set terminal %s size 900,500\nset output '%s/throughput.%s'\n"
                   "set title 'Ping-pong throughput against connections (64 B)'\n"
                   "set xlabel 'connections'\nset ylabel 'messages/s'\nset logscale x\n"
                   "set grid\nset key outside right\nset yrange [0:*]\n"
                   "plot for [i=0:%d] '%s' index i using 1:2 with linespoints title columnheader(1)\n",
                t ? "png" : "svg", dir, t ? "png" : "svg", r->nmodels - 1, dat);
    fclose(g);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>/dev/null", script);
    return system(cmd) == 0 ? 0 : -1;
}

int cmp_write_plots(const struct cmp_result *r, const char *dir)
{
    if (!have_gnuplot())
        return -1;
    int rc = lines(r, dir);
    for (int s = 0; s < r->nscenarios; s++) {
        const struct cmp_scenario *sc = r->scenarios[s];
        char name[64], title[160];
        if (strcmp(sc->name, "pp100") == 0 || (strcmp(sc->name, "pp1") == 0 && r->nscenarios == 1)) {
            snprintf(name, sizeof name, "latency_%s", sc->name);
            snprintf(title, sizeof title, "Latency percentiles: %s", sc->title);
            rc |= bars(r, dir, name, title, "ms", s, 2);
        }
        if (!is_stream(sc)) {
            snprintf(name, sizeof name, "cpu_%s", sc->name);
            snprintf(title, sizeof title, "Server CPU per request: %s", sc->title);
            rc |= bars(r, dir, name, title, "microseconds of CPU per message", s, 1);
        }
        if (strcmp(sc->name, "stevens") == 0 || is_stream(sc)) {
            snprintf(name, sizeof name, "rate_%s", sc->name);
            snprintf(title, sizeof title, "%s", sc->title);
            rc |= bars(r, dir, name, title, is_stream(sc) ? "MB/s" : "connections/s", s, 0);
        }
    }
    /* A failed plot is worth a line, not failing the comparison. */
    if (rc)
        fprintf(stderr, "compare: some plots could not be drawn (gnuplot failed)\n");
    return 0;
}
