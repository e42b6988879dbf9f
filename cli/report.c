/*
 * ioplex report FILE...: one result from the runs of several generators
 * (hosts, or processes on one host), each given as its `bench --json`
 * output or its `bench --hlog` interval log.
 *
 * Counts add up (messages, bytes, errors by kind); latency percentiles
 * come from the merged histograms (every run carries its whole histogram,
 * in the JSON's "histogram" and the log's lines), never from averaging
 * percentiles, which has no meaning. Files whose settings do not fit
 * together (mode, message sizes, framing, transport) are refused unless
 * --mix is given.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "hlog.h"
#include "json_read.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMD "report"
#define FILE_MAX (256L << 20)
#define MAX_ROWS 100000

/* ---- one generator's run ------------------------------------------------------- */

struct gen {
    const char *path;
    char host[64], mode[16], framing[16], transport[16], target[IOP_HOST_MAX + 64];
    char stopped_by[32];
    double size_min, size_max;
    unsigned conns, threads, pipeline;
    double rate, duration_s, warmup_s, timeout_s, measured_s, start_s, start_at;
    double start_offset_ms; /* --start-at: how late its clock said it began */
    uint64_t count;
    struct bench_counters c;
    iop__hist *hist;
    struct hlog_file log;
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *b = cap <= (size_t)FILE_MAX ? realloc(buf, cap) : NULL;
            if (!b) {
                free(buf);
                fclose(f);
                errno = EFBIG;
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Fill g from bench's JSON object. 0, or -1 with why. */
static int from_json(struct gen *g, const char *json, char *why, size_t wlen)
{
    const char *end = json_skip(json, 0);
    if (!end || *json_ws(end)) {
        snprintf(why, wlen, "truncated or damaged JSON");
        return -1;
    }
    char tool[64] = "";
    json_str_at(json, "tool", tool, sizeof tool);
    if (strcmp(tool, "ioplex bench") != 0 && strcmp(tool, "ioplex report") != 0) {
        snprintf(why, wlen, "JSON, but not ioplex bench's result (no \"tool\":\"ioplex bench\")");
        return -1;
    }
    char e[256];
    if (json_str_at(json, "error", e, sizeof e)) {
        snprintf(why, wlen, "a run that did not start: %s", e);
        return -1;
    }
    if (!json_str_at(json, "mode", g->mode, sizeof g->mode)) {
        snprintf(why, wlen, "bench's JSON without its \"mode\"");
        return -1;
    }
    json_str_at(json, "host", g->host, sizeof g->host);
    json_str_at(json, "framing", g->framing, sizeof g->framing);
    json_str_at(json, "transport", g->transport, sizeof g->transport);
    json_str_at(json, "target", g->target, sizeof g->target);
    json_str_at(json, "stopped_by", g->stopped_by, sizeof g->stopped_by);
    json_num_at(json, "size_min", &g->size_min);
    json_num_at(json, "size_max", &g->size_max);
    g->conns = (unsigned)json_u64(json, "connections");
    g->threads = (unsigned)json_u64(json, "threads");
    g->pipeline = (unsigned)json_u64(json, "pipeline");
    json_num_at(json, "rate", &g->rate);
    g->count = json_u64(json, "count");
    json_num_at(json, "duration_s", &g->duration_s);
    json_num_at(json, "warmup_s", &g->warmup_s);
    json_num_at(json, "timeout_s", &g->timeout_s);
    json_num_at(json, "measured_s", &g->measured_s);
    json_num_at(json, "start_unix_s", &g->start_s);
    json_num_at(json, "start_at", &g->start_at);
    json_num_at(json, "start_offset_ms", &g->start_offset_ms);
    g->c.messages = json_u64(json, "messages");
    g->c.failed = json_u64(json, "messages_failed");
    g->c.bytes_sent = json_u64(json, "bytes_sent");
    g->c.bytes_recv = json_u64(json, "bytes_received");
    g->c.connects = json_u64(json, "connections_opened");
    g->c.late = json_u64(json, "late_answers");
    g->c.idle_closes = json_u64(json, "idle_closes");
    g->c.never_sent = json_u64(json, "never_sent");
    g->c.unfinished = json_u64(json, "in_flight_at_end");
    const char *errors = json_get(json, "errors");
    for (int k = 0; k < ERR_KINDS; k++)
        g->c.errors[k] = json_u64(errors, bench_err_key((enum bench_err)k));
    const char *h = json_get(json, "histogram");
    char *hdr = NULL;
    if (h && *h == '{') {
        const char *v = json_get(h, "hdr");
        const char *ve = v ? json_skip(v, 0) : NULL;
        if (ve && *v == '"')
            hdr = strndup(v + 1, (size_t)(ve - v - 2));
    }
    if (!hdr) {
        if (strcmp(g->mode, "stream") == 0)
            return 0; /* no latency in stream mode */
        snprintf(why, wlen, "no \"histogram\" (a JSON from an older ioplex bench?): "
                 "percentiles cannot be merged without it");
        return -1;
    }
    char herr[200];
    int r = hlog_decode(hdr, strlen(hdr), g->hist, herr, sizeof herr);
    free(hdr);
    if (r != 0) {
        snprintf(why, wlen, "its histogram: %s", herr);
        return -1;
    }
    /* What the slots cannot say exactly, the JSON does. */
    double v;
    if (json_u64(h, "count") == g->hist->total && g->hist->total) {
        /* Only where they agree with the slots: a value in the lowest
         * (highest) non-empty one. */
        if (json_num_at(h, "min", &v) && v >= 0 && v <= (double)IOP_HIST_HIGHEST &&
            iop__hist_slot((uint64_t)v) == iop__hist_slot(g->hist->min))
            g->hist->min = (uint64_t)v;
        if (json_num_at(h, "max", &v) && v >= 0 && v <= (double)IOP_HIST_HIGHEST &&
            iop__hist_slot((uint64_t)v) == iop__hist_slot(g->hist->max))
            g->hist->max = (uint64_t)v;
        if (json_num_at(h, "sum", &v) && isfinite(v) && v >= 0)
            g->hist->sum = v;
    }
    return 0;
}

/* Read one file into g. 0, or an exit code with one line said. */
static int load(struct gen *g, const char *path)
{
    memset(g, 0, sizeof *g);
    g->path = path;
    g->hist = malloc(sizeof *g->hist);
    if (!g->hist) {
        cli_error(CMD, "out of memory");
        return EXIT_ERROR;
    }
    iop__hist_reset(g->hist);
    size_t len = 0;
    char *text = slurp(path, &len);
    if (!text) {
        cli_error(CMD, "cannot read %s: %s", path, strerror(errno));
        return EXIT_ERROR;
    }
    char why[512];
    int rc = EXIT_OK;
    const char *p = json_ws(text);
    if (*p == '\0') {
        cli_error(CMD, "%s: empty: neither bench's JSON result nor its --hlog log", path);
        rc = EXIT_USAGE;
    } else if (*p == '{') {
        if (from_json(g, p, why, sizeof why) != 0) {
            cli_error(CMD, "%s: %s", path, why);
            rc = EXIT_USAGE;
        }
    } else if (hlog_looks_like(text)) {
        if (hlog_parse(text, &g->log, why, sizeof why) != 0) {
            cli_error(CMD, "%s: %s (a truncated or damaged log)", path, why);
            rc = EXIT_USAGE;
        } else if (!g->log.ours && g->log.n == 0) {
            cli_error(CMD, "%s: truncated: an HdrHistogram log header with no intervals and "
                           "no ioplex bench lines", path);
            rc = EXIT_USAGE;
        } else if (!g->log.ours) {
            cli_error(CMD, "%s: an HdrHistogram log not written by ioplex bench --hlog: "
                           "its mode and message sizes are unknown", path);
            rc = EXIT_USAGE;
        } else if (!g->log.result) {
            cli_error(CMD, "%s: truncated: the log ends before the run's result line "
                           "(was the bench stopped before it finished?)", path);
            rc = EXIT_USAGE;
        } else if (from_json(g, g->log.result, why, sizeof why) != 0) {
            cli_error(CMD, "%s: its result line: %s", path, why);
            rc = EXIT_USAGE;
        } else {
            uint64_t in_intervals = 0;
            for (size_t i = 0; i < g->log.n; i++)
                in_intervals += g->log.iv[i].h->total;
            if (in_intervals != g->hist->total) {
                cli_error(CMD, "%s: its intervals hold %" PRIu64 " latencies but its result "
                               "%" PRIu64 ": lines are missing (a damaged log)",
                          path, in_intervals, g->hist->total);
                rc = EXIT_USAGE;
            }
        }
    } else {
        cli_error(CMD, "%s: neither bench's JSON result nor an HdrHistogram interval log",
                  path);
        rc = EXIT_USAGE;
    }
    free(text);
    return rc;
}

static void gen_free(struct gen *g)
{
    free(g->hist);
    hlog_free(&g->log);
}

/* Do b's settings fit a's? 0, or -1 with the first difference said. */
static int fits(const struct gen *a, const struct gen *b)
{
    char what[160] = "";
    if (strcmp(a->mode, b->mode) != 0)
        snprintf(what, sizeof what, "mode %s, not %s", b->mode, a->mode);
    else if (a->size_min != b->size_min || a->size_max != b->size_max)
        snprintf(what, sizeof what, "message size %.0f-%.0f bytes, not %.0f-%.0f",
                 b->size_min, b->size_max, a->size_min, a->size_max);
    else if (strcmp(a->framing, b->framing) != 0)
        snprintf(what, sizeof what, "framing %s, not %s", b->framing[0] ? b->framing : "none",
                 a->framing[0] ? a->framing : "none");
    else if (strcmp(a->transport, b->transport) != 0)
        snprintf(what, sizeof what, "transport %s, not %s", b->transport, a->transport);
    if (!what[0])
        return 0;
    cli_error(CMD, "%s does not fit %s: %s (--mix merges them anyway)", b->path, a->path,
              what);
    return -1;
}

/* ---- the merged result ---------------------------------------------------------- */

struct row {
    iop__hist *h;
    unsigned gens;
    double msgs_per_s;
};

static void fmt_ms(FILE *f, double ns)
{
    if (ns >= 1e9)
        fprintf(f, "%9.2f s ", ns / 1e9);
    else if (ns >= 1e6)
        fprintf(f, "%9.3f ms", ns / 1e6);
    else
        fprintf(f, "%9.1f us", ns / 1e3);
}

static double activity(const struct gen *g, int stream)
{
    return stream ? (double)(g->c.bytes_sent + g->c.bytes_recv) : (double)g->c.messages;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioplex report [options] FILE...\n"
            "\n"
            "One result from the runs of several load generators (hosts, or processes\n"
            "on one host): each FILE is what `ioplex bench --json` printed, or the log\n"
            "`ioplex bench --hlog` wrote. Give each run once. Messages, bytes and\n"
            "errors by kind are summed; latency percentiles come from the merged\n"
            "histograms (never averaged); rates are over the longest measured\n"
            "window (start the generators with the same --start-at so the windows\n"
            "are one). Then the busiest and quietest generator, and, from the logs,\n"
            "a table per interval across generators.\n"
            "\n"
            "Options:\n"
            "      --json   one JSON object: bench's, with \"generators\", \"busiest\",\n"
            "               \"quietest\" and \"intervals\" added\n"
            "      --mix    merge runs whose settings differ (mode, message sizes,\n"
            "               framing, transport); refused otherwise\n"
            "  -h, --help   this text\n"
            "\n"
            "A file that is empty, truncated, damaged or not bench's is refused in one\n"
            "line (2).\n\n" EXIT_CODES_HELP);
}

static void json_lat(FILE *f, const iop__hist *h)
{
    if (iop__hist_count(h) == 0) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"p50\":%.6g,\"p90\":%.6g,\"p99\":%.6g,\"p99_9\":%.6g,\"max\":%.6g}",
            (double)iop__hist_percentile(h, 50) / 1e6, (double)iop__hist_percentile(h, 90) / 1e6,
            (double)iop__hist_percentile(h, 99) / 1e6,
            (double)iop__hist_percentile(h, 99.9) / 1e6, (double)iop__hist_max(h) / 1e6);
}

static void json_gen(FILE *f, const struct gen *g)
{
    fputs("{\"file\":", f);
    bench_json_str(f, g->path);
    fputs(",\"host\":", f);
    bench_json_str(f, g->host);
    fprintf(f, ",\"connections\":%u,\"messages\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
               ",\"bytes_received\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"measured_s\":%.6g",
            g->conns, g->c.messages, g->c.bytes_sent, g->c.bytes_recv,
            bench_error_total(&g->c), g->measured_s);
    fputs(",\"latency_ms\":", f);
    json_lat(f, g->hist);
    fputc('}', f);
}

int cmd_report(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"mix", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, mix = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'x': mix = 1; break;
        case 'h': usage(stdout); return EXIT_OK;
        default:
            cli_option_error(CMD, c, argv);
            return EXIT_USAGE;
        }
    }
    int n = argc - optind;
    if (n < 1) {
        cli_error(CMD, "no files: give the JSON results or --hlog logs of the runs to merge");
        return EXIT_USAGE;
    }
    struct gen *g = calloc((size_t)n, sizeof *g);
    iop__hist *total = malloc(sizeof *total);
    struct row *rows = NULL;
    size_t nrows = 0;
    int rc = EXIT_OK;
    if (!g || !total) {
        cli_error(CMD, "out of memory");
        rc = EXIT_ERROR;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        rc = load(&g[i], argv[optind + i]);
        if (rc != EXIT_OK) {
            n = i + 1;
            goto out;
        }
        if (i > 0 && !mix && fits(&g[0], &g[i]) != 0) {
            n = i + 1;
            rc = EXIT_USAGE;
            goto out;
        }
    }

    /* The sums, and the settings of the first run where they cannot add. */
    struct bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    enum bench_mode modes[] = {MODE_PINGPONG, MODE_RATE, MODE_STREAM, MODE_CONNECT};
    for (size_t k = 0; k < 4; k++)
        if (strcmp(g[0].mode, bench_mode_name(modes[k])) == 0)
            cfg.mode = modes[k];
    int stream = cfg.mode == MODE_STREAM;
    snprintf(cfg.target, sizeof cfg.target, "%s", g[0].target);
    for (int i = 1; i < n; i++)
        if (strcmp(g[i].target, g[0].target) != 0)
            snprintf(cfg.target, sizeof cfg.target, "several targets");
    static const enum iop_transport ts[] = {IOP_TCP, IOP_UDP, IOP_UNIX, IOP_UNIX_DGRAM};
    cfg.addr.transport = IOP_TCP;
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        if (strcmp(g[0].transport, iop_transport_name(ts[k])) == 0)
            cfg.addr.transport = ts[k];
    cfg.stream = iop_transport_is_stream(cfg.addr.transport);
    if (g[0].framing[0])
        iop_framing_parse(g[0].framing, &cfg.framing);
    cfg.size_min = (uint32_t)g[0].size_min;
    cfg.size_max = (uint32_t)g[0].size_max;
    cfg.pipeline = g[0].pipeline;
    cfg.count = g[0].count;
    cfg.duration_ns = (int64_t)(g[0].duration_s * 1e9);
    cfg.warmup_ns = (int64_t)(g[0].warmup_s * 1e9);
    cfg.timeout_ns = (int64_t)(g[0].timeout_s * 1e9);
    snprintf(cfg.host, sizeof cfg.host, "%d generators", n);
    cfg.start_at = g[0].start_at; /* kept when every run was given the same */
    for (int i = 1; i < n; i++)
        if (g[i].start_at != g[0].start_at)
            cfg.start_at = 0;
    struct bench_result res = {.cfg = &cfg, .hist = total, .stopped_by = g[0].stopped_by};
    iop__hist_reset(total);
    size_t busiest = 0, quietest = 0;
    for (int i = 0; i < n; i++) {
        cfg.conns += g[i].conns;
        cfg.rate += g[i].rate;
        res.threads += g[i].threads;
        bench_add_counters(&res.c, &g[i].c);
        iop__hist_merge(total, g[i].hist);
        if (g[i].measured_s > res.measured_s)
            res.measured_s = g[i].measured_s;
        if (g[i].start_s > 0 && (res.start_unix_s == 0 || g[i].start_s < res.start_unix_s))
            res.start_unix_s = g[i].start_s;
        if (strcmp(g[i].stopped_by, g[0].stopped_by) != 0)
            res.stopped_by = "several causes";
        if (activity(&g[i], stream) > activity(&g[busiest], stream))
            busiest = (size_t)i;
        if (activity(&g[i], stream) < activity(&g[quietest], stream))
            quietest = (size_t)i;
    }

    /* The intervals of every log, lined up by their wall-clock start in
     * steps of the first log's interval. */
    double t0 = 0, step = 0;
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < g[i].log.n; k++) {
            if (step == 0 && g[i].log.iv[k].len_s > 0)
                step = g[i].log.iv[k].len_s;
            if (t0 == 0 || g[i].log.iv[k].start_s < t0)
                t0 = g[i].log.iv[k].start_s;
        }
    if (step > 0) {
        for (int i = 0; i < n; i++)
            for (size_t k = 0; k < g[i].log.n; k++) {
                const struct hlog_interval *iv = &g[i].log.iv[k];
                double at = (iv->start_s - t0) / step + 0.5; /* rounded below */
                if (!(at >= 0 && at < MAX_ROWS))
                    continue;
                size_t r = (size_t)at;
                if (r >= nrows) {
                    struct row *more = realloc(rows, (r + 1) * sizeof *rows);
                    if (!more) {
                        cli_error(CMD, "out of memory");
                        rc = EXIT_ERROR;
                        goto out;
                    }
                    memset(more + nrows, 0, (r + 1 - nrows) * sizeof *rows);
                    rows = more;
                    nrows = r + 1;
                }
                if (!rows[r].h) {
                    if (!(rows[r].h = malloc(sizeof *rows[r].h))) {
                        cli_error(CMD, "out of memory");
                        rc = EXIT_ERROR;
                        goto out;
                    }
                    iop__hist_reset(rows[r].h);
                }
                iop__hist_merge(rows[r].h, iv->h);
                rows[r].gens++;
                if (iv->len_s > 0)
                    rows[r].msgs_per_s += (double)iv->h->total / iv->len_s;
            }
    }

    if (json) {
        char *buf = NULL;
        size_t blen = 0;
        FILE *m = open_memstream(&buf, &blen);
        if (!m) {
            cli_error(CMD, "out of memory");
            rc = EXIT_ERROR;
            goto out;
        }
        bench_report_json(m, &res);
        fclose(m);
        /* bench's object, its "}\n" replaced by what report adds. */
        const char *tool = "{\"tool\":\"ioplex bench\"";
        if (blen >= 2 && strncmp(buf, tool, strlen(tool)) == 0) {
            fputs("{\"tool\":\"ioplex report\"", stdout);
            fwrite(buf + strlen(tool), 1, blen - strlen(tool) - 2, stdout);
        } else {
            fwrite(buf, 1, blen - 2, stdout);
        }
        free(buf);
        fputs(",\"generators\":[", stdout);
        for (int i = 0; i < n; i++) {
            if (i)
                fputc(',', stdout);
            json_gen(stdout, &g[i]);
        }
        fputs("],\"busiest\":", stdout);
        json_gen(stdout, &g[busiest]);
        fputs(",\"quietest\":", stdout);
        json_gen(stdout, &g[quietest]);
        fputs(",\"intervals\":[", stdout);
        int first = 1;
        for (size_t r = 0; r < nrows; r++) {
            if (!rows[r].h)
                continue;
            printf("%s{\"t_s\":%.6g,\"generators\":%u,\"messages\":%" PRIu64
                   ",\"messages_per_s\":%.6g,\"latency_ms\":",
                   first ? "" : ",", (double)r * step, rows[r].gens, rows[r].h->total,
                   rows[r].msgs_per_s);
            json_lat(stdout, rows[r].h);
            fputc('}', stdout);
            first = 0;
        }
        fputs("]}\n", stdout);
    } else {
        printf("ioplex report: %d %s merged\n", n, n == 1 ? "run" : "runs");
        double start_at = cfg.start_at;
        cfg.start_at = 0; /* bench's line speaks of one host's clock */
        bench_report_human(stdout, &res);
        if (start_at > 0) {
            char when[48];
            hlog_format_time(when, sizeof when, start_at);
            printf("  every run measured from %s (--start-at); \"start\" below is how far\n"
                   "  each host's clock was past it when that run began\n", when);
        }
        const char *unit = stream ? "bytes" : cfg.mode == MODE_CONNECT ? "requests" : "messages";
        double all = 0;
        for (int i = 0; i < n; i++)
            all += activity(&g[i], stream);
        printf("\n  %-28s %5s %14s %7s %12s %7s%s\n", "generator (host)", "conns", unit,
               "share", "p99", "errors", start_at > 0 ? "    start" : "");
        for (int i = 0; i < n; i++) {
            char name[160];
            snprintf(name, sizeof name, "%s (%s)", g[i].path, g[i].host[0] ? g[i].host : "?");
            double a = activity(&g[i], stream);
            printf("  %-28s %5u %14.0f %6.1f%% ", name, g[i].conns, a,
                   all > 0 ? 100.0 * a / all : 0.0);
            if (iop__hist_count(g[i].hist))
                fmt_ms(stdout, (double)iop__hist_percentile(g[i].hist, 99));
            else
                printf("%12s", "-");
            printf(" %7" PRIu64, bench_error_total(&g[i].c));
            if (start_at > 0)
                printf(" %+7.2fms", g[i].start_offset_ms);
            printf("%s\n",
                   n > 1 && (size_t)i == busiest ? "  busiest"
                   : n > 1 && (size_t)i == quietest ? "  quietest" : "");
        }
        if (nrows) {
            printf("\n  per interval (%.3g s), across the generators:\n", step);
            printf("  %8s %10s %12s %12s %12s %12s\n", "t (s)", "generators", "msg/s", "p50",
                   "p99", "max");
            for (size_t r = 0; r < nrows; r++) {
                if (!rows[r].h)
                    continue;
                printf("  %8.2f %10u %12.0f ", (double)r * step, rows[r].gens,
                       rows[r].msgs_per_s);
                if (iop__hist_count(rows[r].h)) {
                    fmt_ms(stdout, (double)iop__hist_percentile(rows[r].h, 50));
                    fputs("  ", stdout);
                    fmt_ms(stdout, (double)iop__hist_percentile(rows[r].h, 99));
                    fputs("  ", stdout);
                    fmt_ms(stdout, (double)iop__hist_max(rows[r].h));
                }
                fputc('\n', stdout);
            }
        } else {
            printf("\n  (no interval logs given: bench --hlog writes them)\n");
        }
    }
    fflush(stdout);
out:
    if (g)
        for (int i = 0; i < n; i++)
            gen_free(&g[i]);
    free(g);
    free(total);
    for (size_t r = 0; r < nrows; r++)
        free(rows[r].h);
    free(rows);
    return rc;
}
